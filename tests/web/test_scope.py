"""Scope for every target, on both databases: an admin acts only on the users in their scope,
items (national master data) are changed by national admins only, and a scoped auditor sees only
the evidence rows of facilities in their scope."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from anomaly.models import Flag, FlagEvidence, Scan
from stock.db import session_factory
from stock.models import Facility, Item, LedgerEntry, User
from tests.web.conftest import add_users, page_csrf, seed_world

SCOPED = {
    "admin_h1": ("admin", "H1", None),
    "admin_tripoli": ("admin", None, "Tripoli"),
    "admin_benghazi": ("admin", None, "Benghazi"),
    "auditor_h1": ("auditor", "H1", None),
}


@pytest.fixture
def web_world(engine):
    Session = session_factory(engine)
    seed_world(Session)
    add_users(Session, SCOPED)
    return engine


def _listed(client) -> set[str]:
    page = client.get("/admin/users")
    assert page.status_code == 200
    return {line.split('"')[0] for line in page.text.split('id="user-')[1:]}


def test_users_page_lists_only_users_in_scope(live_server):
    assert _listed(live_server.login("admin_h1")) == {"admin_h1", "auditor_h1", "manager_h1", "pharm_h1"}
    tripoli = _listed(live_server.login("admin_tripoli"))
    assert {"pharm_h1", "pharm_hc2", "manager_tripoli", "auditor_tripoli", "admin_tripoli"} <= tripoli
    assert not tripoli & {"admin", "auditor", "admin_benghazi"}  # national users and another region's
    assert {"admin", "admin_benghazi", "pharm_h1"} <= _listed(live_server.login("admin"))


@pytest.mark.parametrize("actor,target,allowed", [
    ("admin_h1", "admin", False),  # a national admin is in no scoped admin's scope
    ("admin_h1", "auditor", False),
    ("admin_h1", "pharm_hc2", False),  # another facility
    ("admin_h1", "manager_tripoli", False),  # a regional user is wider than one facility
    ("admin_h1", "pharm_h1", True),
    ("admin_tripoli", "admin", False),
    ("admin_tripoli", "admin_benghazi", False),
    ("admin_tripoli", "manager_tripoli", True),
    ("admin_tripoli", "pharm_hc2", True),
    ("admin", "admin_tripoli", True),
])
def test_disable_acts_only_on_users_in_scope(live_server, actor, target, allowed):
    c = live_server.login(actor)
    r = c.post(f"/admin/users/{target}/disable", data={"csrf_token": page_csrf(c, "/admin/users")})
    # Out of scope answers exactly like a user who does not exist.
    assert r.status_code == (303 if allowed else 404), r.text[:300]
    if not allowed:
        nobody = c.post("/admin/users/nobody/disable", data={"csrf_token": page_csrf(c, "/admin/users")})
        assert nobody.text.replace("nobody", target) == r.text.replace("nobody", target)
    with live_server.Session() as s:
        assert s.scalars(select(User.active).where(User.username == target)).one() is (not allowed)


@pytest.mark.parametrize("actor", ["admin_h1", "admin_tripoli"])
def test_only_national_admins_change_items(live_server, actor):
    c = live_server.login(actor)
    assert c.get("/admin/items/MOR10").status_code == 200  # reading is fine
    token = page_csrf(c, "/admin/items/MOR10")
    r = c.post("/admin/items/MOR10", data={"csrf_token": token, "max_dispense_quantity": "1", "controlled": "on"})
    assert r.status_code == 403
    # Refused before anything is read: an unknown item gets the same answer.
    assert c.post("/admin/items/NOPE", data={"csrf_token": token}).status_code == 403
    with live_server.Session() as s:
        assert s.scalars(select(Item.max_dispense_quantity).where(Item.code == "MOR10")).one() != 1
    national = live_server.login("admin")
    r = national.post("/admin/items/MOR10", data={"csrf_token": page_csrf(national, "/admin/items/MOR10"),
                                                   "max_dispense_quantity": "7"})
    assert r.status_code == 303


def _flag_with_evidence_at_two_facilities(Session) -> str:
    t = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with Session() as s:
        h1 = s.scalars(select(Facility.id).where(Facility.code == "H1")).one()
        entries = {code: s.scalars(select(LedgerEntry.entry_id).join(Facility, Facility.id == LedgerEntry.facility_id)
                                   .where(Facility.code == code)).first() for code in ("H1", "B1")}
        scan = Scan(started_at=t, finished_at=t, through_seq=0)
        s.add(scan)
        s.flush()
        s.add(Flag(flag_id="F-scope", facility_id=h1, subject="facility", subject_id="H1", score=0.9, rank_score=0.9,
                   severity="high", detectors="x", reason="r", status="open", created_at=t, updated_at=t,
                   first_scan_id=scan.id, last_scan_id=scan.id))
        s.flush()
        s.add_all([FlagEvidence(flag_id="F-scope", entry_id=e) for e in entries.values()])
        s.commit()
    return "F-scope"


def test_scoped_auditor_sees_only_evidence_in_scope(live_server):
    flag_id = _flag_with_evidence_at_two_facilities(live_server.Session)
    national = live_server.login("auditor").get(f"/api/v1/flags/{flag_id}").json()
    assert {e["facility_code"] for e in national["evidence"]} == {"H1", "B1"}
    for name in ("auditor_h1", "auditor_tripoli"):
        c = live_server.login(name)
        case = c.get(f"/api/v1/flags/{flag_id}").json()
        assert {e["facility_code"] for e in case["evidence"]} == {"H1"}, name
        export = c.get(f"/flags/{flag_id}/export", params={"format": "csv"})
        assert export.status_code == 200 and "B1" not in export.text
        page = c.get(f"/flags/{flag_id}")
        assert page.status_code == 200 and "B1" not in page.text


def test_a_scoped_admin_sees_an_item_read_only_in_their_language(live_server):
    c = live_server.login("admin_tripoli")
    page = c.get("/admin/items/MOR10")
    assert page.status_code == 200 and 'id="item-form"' not in page.text and 'id="item-national-only"' in page.text
    c.post("/language", data={"lang": "fr", "csrf_token": page_csrf(c)}, headers={"Referer": "/"})
    assert "seul un administrateur national" in c.get("/admin/items/MOR10").text
    assert 'id="item-form"' in live_server.login("admin").get("/admin/items/MOR10").text
