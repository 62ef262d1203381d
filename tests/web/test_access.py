"""Access rules: default deny, scope by facility, region or nation, roles; pages and API alike."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from stock.masterdata import facility_by_code
from stock.models import Facility
from tests.web.conftest import app_routes, make_settings, page_csrf, seed_world
from web import auth
from web.access import (
    PUBLIC_PATHS,
    Forbidden,
    NotFound,
    current_user,
    facility_in_scope,
    require_facility,
    visible_facility_ids,
)


def _depends_on(dependant, target) -> bool:
    return dependant.call is target or any(_depends_on(d, target) for d in dependant.dependencies)


def test_every_route_but_the_public_ones_requires_a_user(sqlite_engine):
    from web.app import create_app

    app = create_app(sqlite_engine, make_settings())
    routes = app_routes(app)
    open_routes = sorted({r.path for r in routes if not _depends_on(r.dependant, current_user)})
    assert set(open_routes) <= set(PUBLIC_PATHS), f"routes reachable without a user: {open_routes}"
    # and the public list names nothing that does not exist
    assert set(PUBLIC_PATHS) <= {r.path for r in routes} | {"/api/openapi.json"}


def test_pharmacist_of_one_facility_sees_nothing_of_another(live_server):
    c = live_server.login("pharm_h1")
    home = c.get("/", follow_redirects=True)
    assert "Tripoli Central Hospital" in home.text
    assert "Souq Al Juma" not in home.text and "Benghazi" not in home.text and "HC2" not in home.text
    rows = c.get("/api/v1/stock/on-hand").json()
    assert rows and {r["facility"] for r in rows} == {"H1"}
    for code, url in (("HC2", "/api/v1/stock/on-hand?facility=HC2"), ("HC2", "/api/v1/stock/card/HC2/MOR10"),
                      ("B1", "/api/v1/stock/on-hand?facility=B1&item=INSG"), ("B1", "/api/v1/stock/card/B1/INSG")):
        r = c.get(url)
        assert r.status_code == 403, url
        assert r.json()["error"] == {"field": "facility", "message": f"facility {code} is outside your scope"}
    # The other pharmacist, the mirror image.
    other = live_server.login("pharm_hc2").get("/api/v1/stock/on-hand").json()
    assert {r["facility"] for r in other} == {"HC2"}


def test_regional_and_national_scopes(live_server):
    regional = live_server.login("auditor_tripoli")
    assert {r["facility"] for r in regional.get("/api/v1/stock/on-hand").json()} == {"H1", "HC2"}
    assert regional.get("/api/v1/stock/card/B1/INSG").status_code == 403
    home = regional.get("/overview").text
    assert "Souq Al Juma" in home and "Benghazi" not in home
    national = live_server.login("auditor")
    assert {r["facility"] for r in national.get("/api/v1/stock/on-hand").json()} == {"H1", "HC2", "B1"}
    assert national.get("/api/v1/stock/card/B1/INSG").json()["closing"] == 20
    assert national.get("/api/v1/me").json()["scope"] == {"kind": "national", "facility": None, "region": None}
    assert regional.get("/api/v1/me").json()["scope"] == {"kind": "region", "facility": None, "region": "Tripoli"}


def test_audit_trail_is_for_admins_and_auditors_within_their_scope(live_server):
    live_server.login("pharm_h1")  # a login at H1
    live_server.login("manager_tripoli")  # a login with no facility
    for username in ("pharm_h1", "manager_h1"):
        r = live_server.login(username).get("/api/v1/audit")
        assert r.status_code == 403 and "auditor" in r.json()["error"]["message"]
    national = live_server.login("auditor").get("/api/v1/audit", params={"action": "login"}).json()
    assert {r["username"] for r in national} >= {"pharm_h1", "manager_tripoli", "auditor"}
    regional = live_server.login("auditor_tripoli").get("/api/v1/audit", params={"action": "login"}).json()
    names = {r["username"] for r in regional}
    assert "pharm_h1" in names and "manager_tripoli" not in names
    first = live_server.login("admin").get("/api/v1/audit", params={"limit": 2}).json()
    assert len(first) == 2 and first[0]["id"] > first[1]["id"]
    older = live_server.login("admin").get("/api/v1/audit", params={"limit": 2, "before": first[1]["id"]}).json()
    assert older[0]["id"] < first[1]["id"]


def test_scope_helpers(engine):
    from stock.db import session_factory

    Session = session_factory(engine)
    seed_world(Session)
    with Session() as s:
        ids = {f.code: f.id for f in s.scalars(select(Facility))}
        user = lambda name: auth.user_by_username(s, name)  # noqa: E731
        assert visible_facility_ids(s, user("pharm_h1")) == [ids["H1"]]
        assert visible_facility_ids(s, user("auditor_tripoli")) == sorted([ids["WH-C"], ids["H1"], ids["HC2"]])
        assert visible_facility_ids(s, user("admin")) == sorted(ids.values())
        b1 = facility_by_code(s, "B1")
        with pytest.raises(Forbidden):
            require_facility(user("pharm_h1"), b1)
        with pytest.raises(Forbidden):
            require_facility(user("auditor_tripoli"), b1)
        assert require_facility(user("auditor"), b1) is b1
        with pytest.raises(NotFound):
            require_facility(user("auditor"), None)
        with pytest.raises(NotFound) as raised:
            facility_in_scope(s, user("auditor"), "NOPE")
        assert raised.value.field == "facility"


def test_reading_a_patients_history_is_scoped_and_always_audited(live_server):
    from web.admin.service import create_user

    with live_server.Session() as s:
        create_user(s, "auditor_benghazi", "auditor", "correct-horse-battery", region="Benghazi",
                    web=make_settings().web)
        s.commit()
    def history(username: str, card: str = "LY0000000001"):
        c = live_server.login(username)
        return c.post("/api/v1/patients/dispensings", json={"health_card_id": card},
                      headers={"X-CSRF-Token": page_csrf(c)})

    national = history("auditor").json()
    assert [(r["facility"], r["item"], r["quantity"], r["prescription_id"]) for r in national] == [
        ("H1", "MOR10", 10, "RX1")]
    assert national[0]["reversed_by"] is None
    from stock.ledger import reverse

    with live_server.Session() as s:
        reverse(s, national[0]["entry_id"], reason="wrong patient", by="pharm_h1", new_id="REV-1")
        s.commit()
    assert history("auditor").json()[0]["reversed_by"] == "REV-1"
    assert len(history("auditor_tripoli").json()) == 1
    assert history("auditor_benghazi").json() == []
    missing = history("auditor", "LY9999")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "health_card_id"
    assert "LY9999" not in missing.text
    assert history("pharm_h1").status_code == 403
    with live_server.Session() as s:
        from web.models import AuditRecord

        reads = s.execute(select(AuditRecord.user_id, AuditRecord.object_id, AuditRecord.detail)
                          .where(AuditRecord.action == "patient_history_read").order_by(AuditRecord.id)).all()
        readers = [auth.user_by_username(s, n).id for n in ("auditor", "auditor", "auditor_tripoli",
                                                             "auditor_benghazi", "auditor")]
    assert [uid for uid, _, _ in reads] == readers
    from stock.pseudonyms import patient_key, pseudonym

    key = patient_key(live_server.app.state.settings)
    assert [obj for _, obj, _ in reads] == [pseudonym("LY0000000001", key)] * 4 + [pseudonym("LY9999", key)]
    assert '"rows": 0' in reads[3][2] and '"found": false' in reads[4][2]
