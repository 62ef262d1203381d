"""Request limits against the live app on both databases: body size, JSON depth, a date outside
the sane range, and Cache-Control on everything personal."""

from __future__ import annotations

from sqlalchemy import func, select

from stock.models import LedgerEntry
from tests.web.test_app_api import bearer, issue_token
from web.middleware import MAX_BODY_BYTES, MAX_JSON_DEPTH, json_depth


def _api(live_server, username="pharm_h1"):
    return live_server.client(headers=bearer(issue_token(live_server, username)))


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{"}]}') == 3
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"[" * 100) == 100


def test_oversized_body_is_refused_before_the_route(live_server):
    c = _api(live_server)
    r = c.post("/api/v1/entries", content=b" " * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["message"] == "the request is too large"
    r = c.post("/api/v1/fhir/bundle", content=b"x" * (MAX_BODY_BYTES + 10))
    assert r.status_code == 413


def test_deeply_nested_json_is_a_clear_400_not_a_server_error(live_server):
    c = _api(live_server)
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        body = "[" * depth + "]" * depth
        for path in ("/api/v1/entries", "/api/v1/fhir/bundle"):
            r = c.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, depth, r.status_code)
            assert "nested" in r.json()["error"]["message"]
    # A usual document passes the check and is answered on its content.
    r = c.post("/api/v1/entries", json={"entries": [{"a": {"b": [[1]]}}]})
    assert r.status_code == 422


def test_a_date_outside_the_sane_range_is_refused(live_server):
    c = _api(live_server)
    for when in ("0001-01-01T00:00:00+00:00", "9999-12-31T00:00:00+00:00", "1999-12-31T23:00:00+00:00"):
        r = c.post("/api/v1/entries", json={"entries": [{
            "entry_id": f"date-{when[:4]}", "occurred_at": when, "facility_code": "H1", "kind": "dispense",
            "item_code": "MOR10", "lot_number": "L1", "quantity": 1, "health_card_id": "LY0000000001"}]})
        assert r.status_code == 422, (when, r.text)
        assert r.json()["error"]["field"] == "entries[0].occurred_at"
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.entry_id.like("date-%"))) == 0


def test_personal_answers_are_not_stored_by_caches(live_server):
    c = _api(live_server, "auditor")
    for path in ("/api/v1/me", "/api/v1/audit"):
        r = c.get(path)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store", path
    r = c.post("/api/v1/patients/dispensings", json={"health_card_id": "LY0000000001"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    page = live_server.login("auditor")
    for path in ("/", "/flags", "/audit", "/nowhere"):
        assert page.get(path).headers["cache-control"] == "no-store", path
    assert live_server.client().get("/login").headers["cache-control"] == "no-store"
    assert page.get("/static/dawa.css").headers["cache-control"] == "no-cache"
