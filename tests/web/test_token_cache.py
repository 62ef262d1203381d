"""Personal tokens checked moments ago are not read from the database again (web.auth.TokenCache),
yet a token revoked, an owner disabled or moved, or an item edited counts from the next request;
a change the process cannot see (another process's) counts within the cache's few seconds."""

from __future__ import annotations

import time

from sqlalchemy import event, select, text, update

from stock.models import Item, User
from tests.web.conftest import page_csrf
from tests.web.test_api_entries import row
from tests.web.test_app_api import bearer, issue_token
from web import auth
from web.models import ApiToken


def token_reads(engine) -> list[str]:
    """The SELECTs of api_token the app sends from now on (a list that grows)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, params, context, many):
        if statement.lstrip().upper().startswith("SELECT") and "api_token" in statement:
            seen.append(statement)

    return seen


def test_a_checked_token_is_not_read_again(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    reads = token_reads(live_server.engine)
    for _ in range(5):
        assert c.get("/api/v1/me").status_code == 200
    assert len(reads) == 1


def test_a_revoked_token_is_refused_on_the_next_request(live_server):
    token = issue_token(live_server, "pharm_h1")
    c = live_server.client(headers=bearer(token))
    assert c.get("/api/v1/me").status_code == 200
    with live_server.Session() as s:
        s.scalars(select(ApiToken)).one().revoked_at = auth.now()
        s.commit()
    r = c.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid or revoked API token"


def test_a_revocation_by_statement_is_refused_on_the_next_request(live_server):
    token = issue_token(live_server, "pharm_h1")
    c = live_server.client(headers=bearer(token))
    assert c.get("/api/v1/me").status_code == 200
    with live_server.Session() as s:
        s.execute(update(ApiToken).values(revoked_at=auth.now()))
        s.commit()
    assert c.get("/api/v1/me").status_code == 401


def test_an_owner_disabled_on_the_admin_page_is_refused_on_the_next_request(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    assert c.get("/api/v1/me").status_code == 200
    admin = live_server.login("admin")
    r = admin.post("/admin/users/pharm_h1/disable", data={"csrf_token": page_csrf(admin, "/admin/users")})
    assert r.status_code == 303
    assert c.get("/api/v1/me").status_code == 401


def test_an_owner_moved_to_another_facility_acts_there_from_the_next_request(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    assert c.get("/api/v1/me").json()["scope"]["facility"] == "H1"
    with live_server.Session() as s:
        from stock.models import Facility

        hc2 = s.scalars(select(Facility).where(Facility.code == "HC2")).one()
        s.scalars(select(User).where(User.username == "pharm_h1")).one().facility_id = hc2.id
        s.commit()
    assert c.get("/api/v1/me").json()["scope"]["facility"] == "HC2"
    r = c.post("/api/v1/entries", json={"entries": [row("tc-moved-1", quantity=1)]})
    assert r.status_code == 403, r.text


def test_a_change_out_of_sight_counts_within_the_cache_time(live_server):
    """A revocation this process cannot see (another process, a hand edit) holds for at most
    TokenCache.seconds more."""
    live_server.app.state.token_cache.seconds = 0.5
    token = issue_token(live_server, "pharm_h1")
    c = live_server.client(headers=bearer(token))
    assert c.get("/api/v1/me").status_code == 200
    # Straight through the driver, as another process would: no session, no event.
    with live_server.engine.connect() as conn:
        conn.execute(text("UPDATE api_token SET revoked_at = created_at"))
        conn.commit()
    assert c.get("/api/v1/me").status_code == 200  # still taken as checked ...
    time.sleep(0.6)
    assert c.get("/api/v1/me").status_code == 401  # ... for no longer than the cache time


def test_an_item_edited_by_an_admin_counts_on_the_next_dispense(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    r = c.post("/api/v1/entries", json={"entries": [row("tc-item-1", quantity=50)]})
    assert r.status_code == 201, r.text
    assert "over_ceiling" not in {n["code"] for n in r.json()["entries"][0]["notes"]}
    admin = live_server.login("admin")
    r = admin.post("/admin/items/MOR10", data={"csrf_token": page_csrf(admin, "/admin/items/MOR10"),
                                               "max_dispense_quantity": "20", "controlled": "1"})
    assert r.status_code == 303
    with live_server.Session() as s:
        assert s.scalar(select(Item.max_dispense_quantity).where(Item.code == "MOR10")) == 20
    r = c.post("/api/v1/entries", json={"entries": [row("tc-item-2", quantity=30)]})
    assert r.status_code == 201, r.text
    assert "over_ceiling" in {n["code"] for n in r.json()["entries"][0]["notes"]}
