"""Admin pages against the live app on both databases: users, facilities, ledger verification."""

from __future__ import annotations

from sqlalchemy import select, update

from stock.models import Balance, User
from tests.web.conftest import login, page_csrf
from web.models import ApiToken, AuditRecord


def test_users_page_lists_users_and_disabling_ends_their_logins(live_server):
    from tests.web.test_app_api import bearer, issue_token

    pharm = live_server.login("pharm_hc2")
    api = live_server.client(headers=bearer(issue_token(live_server, "pharm_hc2")))
    assert api.get("/api/v1/me").status_code == 200
    c = live_server.login("admin")
    page = c.get("/admin/users")
    assert page.status_code == 200
    for name in ("pharm_h1", "manager_tripoli", "auditor", "admin"):
        assert f'id="user-{name}"' in page.text
    assert "Facility H1" in page.text and "Region Tripoli" in page.text
    r = c.post("/admin/users/pharm_hc2/disable", data={"csrf_token": page_csrf(c, "/admin/users")})
    assert r.status_code == 303 and r.headers["location"] == "/admin/users"
    assert pharm.get("/").status_code == 303  # their login ended
    assert api.get("/api/v1/me").status_code == 401  # and their tokens were revoked
    assert login(live_server.client(), "pharm_hc2").status_code != 303
    with live_server.Session() as s:
        assert s.scalars(select(User.active).where(User.username == "pharm_hc2")).one() is False
        rec = s.scalars(select(AuditRecord).where(AuditRecord.action == "user_disabled")).one()
        assert rec.object_id == "pharm_hc2" and '"tokens_revoked": 1' in rec.detail
        assert s.scalars(select(ApiToken.revoked_at)).one() is not None
    token = page_csrf(c, "/admin/users")
    assert c.post("/admin/users/nobody/disable", data={"csrf_token": token}).status_code == 404
    assert c.post("/admin/users/admin/disable", data={"csrf_token": token}).status_code == 403


def test_facilities_page_lists_them(live_server):
    page = live_server.login("admin").get("/admin/facilities")
    assert page.status_code == 200
    for code in ("WH-C", "H1", "HC2", "B1"):
        assert f"<bdi>{code}</bdi>" in page.text


def test_ledger_verification_runs_on_demand_and_shows_drift_per_facility(live_server):
    c = live_server.login("admin")
    page = c.get("/admin/ledger")
    assert page.status_code == 200 and 'id="verify-result"' not in page.text
    r = c.post("/admin/ledger/verify", data={"csrf_token": page_csrf(c, "/admin/ledger")})
    assert r.status_code == 200 and 'id="verify-summary" class="ok"' in r.text
    # A cached balance tampered with is reported at its facility only.
    with live_server.Session() as s:
        s.execute(update(Balance).where(Balance.on_hand == 50).values(on_hand=49))
        s.commit()
    r = c.post("/admin/ledger/verify", data={"csrf_token": page_csrf(c, "/admin/ledger")})
    assert 'id="verify-summary" class="error"' in r.text
    row_hc2 = r.text.split('id="verify-HC2"')[1].split("</tr>")[0]
    row_h1 = r.text.split('id="verify-H1"')[1].split("</tr>")[0]
    assert "drift" in row_hc2 and "drift" not in row_h1
    with live_server.Session() as s:
        assert len(s.scalars(select(AuditRecord).where(AuditRecord.action == "ledger_verified")).all()) == 2


def test_admin_pages_are_for_admins_only(live_server):
    for username in ("pharm_h1", "manager_tripoli", "auditor"):
        c = live_server.login(username)
        for path in ("/admin/users", "/admin/facilities", "/admin/ledger"):
            assert c.get(path).status_code == 403, (username, path)
