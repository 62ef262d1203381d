"""Admins create, edit, disable and enable users and create and edit facilities in the pages,
against the live app on both databases: scope rules, the password policy, errors under their
fields, audit records."""

from __future__ import annotations

import json

from sqlalchemy import select

from stock.models import Facility, User
from tests.web.conftest import PASSWORD, add_users, login, page_csrf
from web.models import AuditRecord

NEW_PASSWORD = "violet-harbour-kettle-42"


def _form(client, path: str, **data):
    return client.post(path, data={"csrf_token": page_csrf(client, path), **data})


def _error(html: str, field: str) -> str:
    return html.split(f'id="f-{field}-error"')[1].split(">", 1)[1].split("<", 1)[0]


def test_admin_creates_a_user_who_can_then_log_in_and_the_creation_is_audited(live_server):
    c = live_server.login("admin")
    r = _form(c, "/admin/users/new", username="salma", display_name="Salma Idris", role="pharmacist",
              facility="HC2", region="", language="fr", password=NEW_PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/admin/users"
    assert login(live_server.client(), "salma", NEW_PASSWORD).status_code == 303
    with live_server.Session() as s:
        u = s.scalars(select(User).where(User.username == "salma")).one()
        assert (u.display_name, u.role, u.language, u.region) == ("Salma Idris", "pharmacist", "fr", None)
        rec = s.scalars(select(AuditRecord).where(AuditRecord.action == "user_created")
                        .where(AuditRecord.object_id == "salma")).one()
        admin_id = s.scalar(select(User.id).where(User.username == "admin"))
        assert rec.user_id == admin_id and json.loads(rec.detail)["via"] == "web"


def test_bad_input_is_shown_under_its_field_in_the_readers_language_and_nothing_is_created(live_server):
    c = live_server.login("admin")
    r = _form(c, "/admin/users/new", username="pharm_h1", role="pharmacist", facility="", region="",
              language="", password="short")
    assert r.status_code == 422
    assert _error(r.text, "username") == "This user name is already taken."
    assert _error(r.text, "facility") == "This role works at one facility: choose it."
    r = _form(c, "/admin/users/new", username="omar", role="auditor", facility="", region="Tripoli",
              language="", password="password12345")
    assert r.status_code == 422 and "Choose another password" in _error(r.text, "password")
    assert 'value="omar"' in r.text  # typed input kept
    c.post("/language", data={"lang": "fr", "csrf_token": page_csrf(c, "/admin/users")})
    r = _form(c, "/admin/users/new", username="bad name", role="auditor", facility="H1", region="Tripoli",
              password=NEW_PASSWORD)
    assert r.status_code == 422 and "nom d’utilisateur" in _error(r.text, "username").lower()
    with live_server.Session() as s:
        assert s.scalar(select(User.id).where(User.username.in_(["omar", "bad name"]))) is None


def test_a_regional_admin_acts_only_within_their_region(live_server):
    add_users(live_server.Session, {"admin_tripoli": ("admin", None, "Tripoli"),
                                    "pharm_b1": ("pharmacist", "B1", None)})
    c = live_server.login("admin_tripoli")
    form = c.get("/admin/users/new").text
    assert 'value="H1"' in form and 'value="B1"' not in form and 'value="Benghazi"' not in form
    r = _form(c, "/admin/users/new", username="nadia", role="pharmacist", facility="B1", password=NEW_PASSWORD)
    assert r.status_code == 422 and _error(r.text, "facility") == "Choose one of the list."
    r = _form(c, "/admin/users/new", username="nadia", role="auditor", facility="", region="", password=NEW_PASSWORD)
    assert r.status_code == 422  # a national user is for a national admin to make
    assert c.get("/admin/users/pharm_b1").status_code == 404  # outside the scope: as if unknown
    token = page_csrf(c, "/admin/users")
    assert c.post("/admin/users/pharm_b1/enable", data={"csrf_token": token}).status_code == 404
    # Facilities are national master data.
    assert c.get("/admin/facilities/new").status_code == 403
    assert c.post("/admin/facilities/H1", data={"csrf_token": token, "name": "x", "region": "y",
                                                "kind": "hospital"}).status_code == 403
    assert 'href="/admin/facilities/new"' not in c.get("/admin/facilities").text


def test_editing_a_user_changes_role_scope_and_language_and_is_audited(live_server):
    c = live_server.login("admin")
    page = c.get("/admin/users/pharm_hc2")
    assert page.status_code == 200 and 'value="HC2" selected' in page.text
    r = _form(c, "/admin/users/pharm_hc2", display_name="Huda", role="facility_manager", facility="H1",
              region="", language="ar")
    assert r.status_code == 303
    with live_server.Session() as s:
        u = s.scalars(select(User).where(User.username == "pharm_hc2")).one()
        h1 = s.scalar(select(Facility.id).where(Facility.code == "H1"))
        assert (u.display_name, u.role, u.facility_id, u.language) == ("Huda", "facility_manager", h1, "ar")
        detail = json.loads(s.scalars(select(AuditRecord.detail).where(AuditRecord.action == "user_updated")).one())
        assert detail["role"] == {"old": "pharmacist", "new": "facility_manager"}
        assert detail["facility"] == {"old": "HC2", "new": "H1"}
    r = _form(c, "/admin/users/admin", role="auditor", facility="", region="", language="")
    assert r.status_code == 422 and _error(r.text, "role") == "You cannot change your own role or scope."


def test_a_disabled_user_is_enabled_again(live_server):
    c = live_server.login("admin")
    token = page_csrf(c, "/admin/users")
    assert c.post("/admin/users/pharm_hc2/disable", data={"csrf_token": token}).status_code == 303
    assert 'action="/admin/users/pharm_hc2/enable"' in c.get("/admin/users").text
    assert login(live_server.client(), "pharm_hc2").status_code != 303
    assert c.post("/admin/users/pharm_hc2/enable", data={"csrf_token": token}).status_code == 303
    assert login(live_server.client(), "pharm_hc2").status_code == 303
    with live_server.Session() as s:
        assert s.scalars(select(AuditRecord.object_id).where(AuditRecord.action == "user_enabled")).all() == ["pharm_hc2"]
    # Without the form's token nothing changes.
    assert c.post("/admin/users/pharm_hc2/disable").status_code == 403


def test_a_national_admin_creates_and_edits_facilities(live_server):
    c = live_server.login("admin")
    r = _form(c, "/admin/facilities/new", code="H1", name="", region="Misrata", kind="clinic")
    assert r.status_code == 422
    assert _error(r.text, "code") == "This code is already taken."
    assert _error(r.text, "name") == "Required." and _error(r.text, "kind") == "Choose one of the list."
    r = _form(c, "/admin/facilities/new", code="M1", name="Misrata Clinic", region="Misrata", kind="health_center")
    assert r.status_code == 303
    r = _form(c, "/admin/facilities/M1", name="Misrata Central Clinic", region="Misrata", kind="hospital")
    assert r.status_code == 303
    assert "Misrata Central Clinic" in c.get("/admin/facilities").text
    with live_server.Session() as s:
        fac = s.scalars(select(Facility).where(Facility.code == "M1")).one()
        assert (fac.name, fac.kind) == ("Misrata Central Clinic", "hospital")
        actions = s.scalars(select(AuditRecord.action).where(AuditRecord.object_id == "M1")
                            .order_by(AuditRecord.id)).all()
        assert actions == ["facility_created", "facility_updated"]
    assert c.get("/admin/facilities/NOPE").status_code == 404
