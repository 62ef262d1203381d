"""The audit trail page against the live app on both databases (the postgres-marked variants run
the page's query on PostgreSQL): newest first, the reader's scope as on /api/v1/audit, filters by
user, action, days and facility, paging back by record id, times in the facility's zone."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from stock.models import Facility, User
from tests.web.conftest import page_csrf
from web.models import AuditRecord
from web.templating import _format_datetime

T0 = datetime(2026, 3, 1, 21, 30, tzinfo=timezone.utc)  # 23:30 on 1 March in Tripoli (UTC+2)


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="record-(\d+)"', html)]


def _actions(html: str) -> list[str]:
    return re.findall(r'data-action="([^"]+)"', html)


def _seed(live_server, rows: list[tuple]) -> list[int]:
    """Audit records (action, facility code or None, username or None, at, detail) in this order."""
    with live_server.Session() as s:
        fac = dict(s.execute(select(Facility.code, Facility.id)).all())
        users = dict(s.execute(select(User.username, User.id)).all())
        recs = [AuditRecord(at=at, action=action, facility_id=fac.get(code), user_id=users.get(who),
                            object_type="test", object_id=str(n), detail=detail, ip="10.0.0.9")
                for n, (action, code, who, at, detail) in enumerate(rows)]
        s.add_all(recs)
        s.commit()
        return [r.id for r in recs]


def _world(live_server) -> dict[str, int]:
    ids = _seed(live_server, [
        ("patient_history_read", "H1", "auditor_tripoli", T0, '{"rows": 3, "via": "flag"}'),
        ("patient_history_read", "B1", "auditor", T0 + timedelta(hours=1), None),
        ("ledger_post", "HC2", "pharm_hc2", T0 + timedelta(days=1), '{"kind": "dispense", "quantity": "5"}'),
        ("item_updated", None, "admin", T0 + timedelta(days=2),
         '{"max_dispense_quantity": {"old": "60", "new": "90"}, "via": "web"}'),
    ])
    return dict(zip(("h1_read", "b1_read", "hc2_post", "item_edit"), ids))


def test_admin_sees_every_record_newest_first_with_times_in_the_facility_zone(live_server):
    seeded = _world(live_server)
    with live_server.Session() as s:
        s.execute(update(Facility).where(Facility.code == "H1").values(timezone="Asia/Tokyo"))
        s.commit()
    c = live_server.login("admin")
    page = c.get("/audit")
    assert page.status_code == 200
    ids = _ids(page.text)
    assert ids == sorted(ids, reverse=True) and set(seeded.values()) <= set(ids)
    assert _actions(page.text)[0] == "login"  # the admin's own login, the newest record
    edit = page.text.split(f'id="record-{seeded["item_edit"]}"')[1].split("</tr>")[0]
    assert "<bdi>admin</bdi>" in edit and "60 → 90" in edit and "<bdi>item_updated</bdi>" in edit
    h1 = page.text.split(f'id="record-{seeded["h1_read"]}"')[1].split("</tr>")[0]
    assert _format_datetime("en", T0, tz="Asia/Tokyo") in h1 and "<bdi>H1</bdi>" in h1 and "10.0.0.9" in h1
    hc2 = page.text.split(f'id="record-{seeded["hc2_post"]}"')[1].split("</tr>")[0]
    assert _format_datetime("en", T0 + timedelta(days=1)) in hc2  # no zone of its own: the default one
    assert '<a href="/audit">' in page.text  # in the navigation
    # In French, times are written the French way.
    c.post("/language", data={"lang": "fr", "csrf_token": page_csrf(c)})
    fr = c.get("/audit").text
    assert "Journal d’audit" in fr and _format_datetime("fr", T0, tz="Asia/Tokyo") in fr


def test_auditors_see_their_scope_only_as_on_the_api(live_server):
    seeded = _world(live_server)
    regional = live_server.login("auditor_tripoli")
    page = regional.get("/audit")
    assert page.status_code == 200
    ids = set(_ids(page.text))
    assert {seeded["h1_read"], seeded["hc2_post"]} <= ids
    assert seeded["b1_read"] not in ids  # Benghazi: outside her region
    assert seeded["item_edit"] not in ids and "login" not in _actions(page.text)  # tied to no facility
    api = {r["id"] for r in regional.get("/api/v1/audit", params={"limit": 1000}).json()}
    assert ids == api  # one rule for both
    assert regional.get("/audit", params={"facility": "B1"}).status_code == 403
    assert regional.get("/audit", params={"facility": "NOPE"}).status_code == 404
    at_hc2 = _ids(regional.get("/audit", params={"facility": "HC2"}).text)
    assert seeded["hc2_post"] in at_hc2 and seeded["h1_read"] not in at_hc2
    with live_server.Session() as s:
        hc2 = s.scalar(select(Facility.id).where(Facility.code == "HC2"))
        assert {s.get(AuditRecord, i).facility_id for i in at_hc2} == {hc2}
    # The facility filter offers only her facilities.
    assert 'value="B1"' not in page.text and 'value="H1"' in page.text

    national = set(_ids(live_server.login("auditor").get("/audit").text))
    assert set(seeded.values()) <= national
    for username in ("pharm_h1", "manager_h1", "manager_tripoli"):
        c = live_server.login(username)
        assert c.get("/audit").status_code == 403, username
        assert '<a href="/audit">' not in c.get("/", follow_redirects=True).text


def test_filters_by_user_action_days_and_facility(live_server):
    seeded = _world(live_server)
    c = live_server.login("admin")

    def ids(**params) -> list[int]:
        r = c.get("/audit", params=params)
        assert r.status_code == 200, (params, r.text[:300])
        return _ids(r.text)

    assert ids(action="patient_history_read") == [seeded["b1_read"], seeded["h1_read"]]
    assert ids(user="pharm_hc2") == [seeded["hc2_post"]]
    assert ids(facility="B1") == [seeded["b1_read"]]
    # Days run midnight to midnight in Tripoli: 21:30 UTC on 1 March is 23:30 there, 22:30 is 2 March.
    assert ids(since="2026-03-01", until="2026-03-01") == [seeded["h1_read"]]
    assert ids(since="2026-03-02", until="2026-03-02") == [seeded["hc2_post"], seeded["b1_read"]]
    later = ids(since="2026-03-03")  # the item edit, and the logins and user set-up of today
    assert seeded["item_edit"] in later and not {seeded["h1_read"], seeded["b1_read"], seeded["hc2_post"]} & set(later)
    assert ids(until="2026-03-02") == [seeded["hc2_post"], seeded["b1_read"], seeded["h1_read"]]
    assert ids(until="2026-03-02", action="patient_history_read", user="auditor") == [seeded["b1_read"]]
    page = c.get("/audit", params={"user": "pharm_hc2", "action": "ledger_post"}).text
    assert 'id="f-user" name="user" type="text" value="pharm_hc2"' in page  # the filters are kept
    assert '<option value="ledger_post">' in page  # the actions on record are suggested


def test_bad_filters_are_named_next_to_their_field(live_server):
    _world(live_server)
    c = live_server.login("admin")
    for params, field, message in (({"since": "1 March"}, "since", "YYYY-MM-DD"),
                                   ({"since": "2026-03-05", "until": "2026-03-01"}, "until", "before the start"),
                                   ({"user": "nobody"}, "user", "No user has this name.")):
        r = c.get("/audit", params=params)
        assert r.status_code == 422 and _ids(r.text) == [], params
        err = r.text.split(f'id="f-{field}-error"')[1].split("</small>")[0]
        assert message in err, (params, err)
        assert f'value="{params[field]}"' in r.text  # what was typed is kept


def test_paging_walks_back_by_record_id(live_server):
    _seed(live_server, [("ledger_post", "H1", "pharm_h1", T0 + timedelta(minutes=n), None) for n in range(120)])
    c = live_server.login("admin")
    params = {"action": "ledger_post"}
    first = c.get("/audit", params=params)
    ids1 = _ids(first.text)
    assert len(ids1) == 50 and 'rel="first"' not in first.text
    older = re.search(r'id="older" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    assert older == f"/audit?before={ids1[-1]}&action=ledger_post"
    second = c.get(older)
    ids2 = _ids(second.text)
    assert len(ids2) == 50 and max(ids2) < min(ids1) and 'rel="first"' in second.text
    fragment = c.get("/audit", params={**params, "before": ids2[-1]}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and 'id="audit-filters"' not in fragment.text
    ids3 = _ids(fragment.text)
    assert len(ids3) == 20 and 'id="older"' not in fragment.text
    assert len(set(ids1 + ids2 + ids3)) == 120
    assert c.get("/audit", params={"before": 0}).status_code == 422
