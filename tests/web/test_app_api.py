"""The JSON API and what wraps every response: tokens, error bodies, docs, headers, CSRF, health."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.web.conftest import app_routes, csrf_of, page_csrf
from web import auth
from web.middleware import CONTENT_SECURITY_POLICY, UNSAFE_METHODS
from web.models import ApiToken


def issue_token(live_server, username: str, name: str = "integration") -> str:
    with live_server.Session() as s:
        token, _ = auth.issue_api_token(s, auth.user_by_username(s, username), name)
        s.commit()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_personal_token_acts_as_its_owner(live_server):
    token = issue_token(live_server, "pharm_h1")
    c = live_server.client(headers=bearer(token))
    me = c.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json() == {"username": "pharm_h1", "display_name": None, "role": "pharmacist", "language": None,
                         "scope": {"kind": "facility", "facility": "H1", "region": None}}
    rows = c.get("/api/v1/stock/on-hand").json()
    assert {r["facility"] for r in rows} == {"H1"}
    assert c.get("/api/v1/stock/on-hand", params={"facility": "HC2"}).status_code == 403
    with live_server.Session() as s:
        assert s.scalars(select(ApiToken.last_used_at)).one() is not None
        assert token not in s.scalars(select(ApiToken.token_hash)).all()
    # A token opens the API only, never the pages (they go by the session cookie).
    assert c.get("/").status_code == 303


@pytest.mark.parametrize("case", ["unknown", "revoked", "owner disabled", "not bearer"])
def test_bad_tokens_get_401_with_an_error_body(live_server, case):
    token = issue_token(live_server, "pharm_h1")
    with live_server.Session() as s:
        row = s.scalars(select(ApiToken)).one()
        if case == "revoked":
            row.revoked_at = auth.now()
        if case == "owner disabled":
            auth.user_by_username(s, "pharm_h1").active = False
        s.commit()
    header = {"unknown": bearer("dawa_pat_" + "x" * 43), "revoked": bearer(token),
              "owner disabled": bearer(token), "not bearer": {"Authorization": f"Basic {token}"}}[case]
    r = live_server.client(headers=header).get("/api/v1/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"error": {"field": "Authorization", "message": "invalid or revoked API token"}}


def test_no_credentials_on_the_api_is_401_json_and_on_pages_a_redirect(live_server):
    c = live_server.client()
    r = c.get("/api/v1/stock/on-hand")
    assert r.status_code == 401 and r.json()["error"]["message"] == "log in first"
    assert "set-cookie" not in r.headers  # the API hands out no pre-login cookie
    assert c.get("/").headers["location"] == "/login?next=%2F"


def test_token_requests_need_no_csrf_token_but_cookie_requests_do(live_server):
    token = issue_token(live_server, "admin")
    # No state-changing API route yet answers POST on /api/v1/me: 405 shows the CSRF check let it through.
    assert live_server.client(headers=bearer(token)).post("/api/v1/me", json={}).status_code == 405
    c = live_server.login("admin")
    r = c.post("/api/v1/me", json={})
    assert r.status_code == 403 and r.json()["error"]["field"] == "csrf_token"
    assert c.post("/api/v1/me", json={}, headers={"X-CSRF-Token": page_csrf(c)}).status_code == 405


def test_domain_and_validation_errors_name_the_field(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "auditor")))
    cases = [
        ("/api/v1/stock/on-hand?item=NOPE", 404, "item", "unknown item 'NOPE'"),
        ("/api/v1/stock/on-hand?facility=NOPE", 404, "facility", "unknown facility 'NOPE'"),
        ("/api/v1/stock/card/H1/NOPE", 404, "item", "unknown item 'NOPE'"),
        ("/api/v1/stock/on-hand?limit=0", 422, "limit", None),
        ("/api/v1/stock/card/H1/MOR10?since=yesterday", 422, "since", None),
        ("/api/v1/stock/card/H1/MOR10?since=2026-03-01T00:00:00", 422, "since", None),
        ("/api/v1/nothing-here", 404, None, "no such page"),
    ]
    for url, status, field, message in cases:
        r = c.get(url)
        assert r.status_code == status, url
        body = r.json()
        assert set(body) == {"error"} and body["error"]["field"] == field, (url, body)
        assert body["error"]["message"], url
        if message:
            assert body["error"]["message"] == message


def test_stock_card_gives_the_running_balance_in_numbers(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    card = c.get("/api/v1/stock/card/H1/MOR10").json()
    assert card["facility"] == "H1" and card["opening"] == 0 and card["closing"] == 90
    assert [(x["kind"], x["effect"], x["balance"]) for x in card["lines"]] == [("receipt", 100, 100),
                                                                              ("dispense", -10, 90)]
    assert card["lines"][1]["prescription_id"] == "RX1"
    later = c.get("/api/v1/stock/card/H1/MOR10", params={"since": "2030-01-01T00:00:00Z"}).json()
    assert later["opening"] == 90 and later["lines"] == []


def test_security_headers_on_every_kind_of_response(live_server):
    c = live_server.login("pharm_h1")
    anon = live_server.client()
    responses = [c.get("/", follow_redirects=True), anon.get("/login"), anon.get("/"), anon.get("/healthz"),
                 anon.get("/static/dawa.css"), anon.get("/static/missing.css"), anon.get("/api/v1/me"),
                 c.get("/api/v1/stock/on-hand?facility=HC2"), c.get("/no-such-page"), anon.get("/api/docs"),
                 anon.get("/api/openapi.json"), anon.post("/logout")]
    for r in responses:
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, r.url
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-content-type-options"] == "nosniff"
    csp = CONTENT_SECURITY_POLICY
    for rule in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                 "frame-ancestors 'none'"):
        assert rule in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_pages_carry_no_inline_script(live_server):
    c = live_server.login("pharm_h1")
    for page in (c.get("/", follow_redirects=True), live_server.client().get("/login"), live_server.client().get("/api/docs")):
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page.text, flags=re.S)
        assert scripts, page.url
        assert all(body.strip() == "" for body in scripts), page.url
        assert not re.search(r"\son[a-z]+\s*=", page.text), page.url  # no onclick= and the like


def test_api_docs_are_served_from_this_site(live_server):
    c = live_server.client()
    docs = c.get("/api/docs")
    assert docs.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert sources and all(s.startswith("/api/") for s in sources)
    for src in sources:
        assert c.get(src).status_code == 200, src
    schema = c.get("/api/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/v1/me", "/api/v1/stock/on-hand", "/api/v1/stock/card/{facility}/{item}",
            "/api/v1/audit"} <= paths
    assert all(p.startswith("/api/v1/") for p in paths)  # pages stay out of the API description


def test_versioned_static_files_are_cached_for_long_the_others_revalidated(live_server):
    c = live_server.client()
    page = c.get("/login").text
    linked = re.findall(r'(?:src|href)="(/static/[^"]+\?v=[^"]+)"', page)
    assert linked
    for url in linked:
        r = c.get(url)
        assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert c.get("/static/dawa.css").headers["cache-control"] == "no-cache"


def test_health_needs_no_login(live_server):
    r = live_server.client().get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


def _unsafe_routes(app):
    for route in app_routes(app):
        for method in sorted(set(route.methods) & UNSAFE_METHODS):
            yield method, re.sub(r"\{[^}]+\}", "x", route.path)


def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(live_server):
    """Walks app.routes, so routes added later are covered without being listed here."""
    routes = list(_unsafe_routes(live_server.app))
    assert ("POST", "/login") in routes and ("POST", "/logout") in routes
    c = live_server.login("admin")
    anon = live_server.client()
    anon.get("/login")
    for method, path in routes:
        api = path.startswith("/api/")
        for client, headers, data in (
            (c, {}, {}),
            (c, {}, {"csrf_token": "wrong"}),
            (c, {"X-CSRF-Token": "wrong"}, {}),
            (anon, {}, {}),
            (anon, {}, {"csrf_token": "wrong"}),
        ):
            r = client.request(method, path, data=data or None, headers=headers)
            if api and client is anon:
                # No login, no ambient credential to abuse: refused as unauthenticated.
                assert r.status_code == 401, (method, path, r.status_code)
                continue
            assert r.status_code == 403, (method, path, headers, data, r.status_code)
            if api:
                assert r.json()["error"]["field"] == "csrf_token"
            else:
                assert "did not come from this site" in r.text or "reload the page" in r.text
        # Multipart forms are checked the same way.
        r = c.request(method, path, files={"csrf_token": (None, "wrong")})
        assert r.status_code == 403, (method, path, "multipart")
    # Still logged in: none of the refused requests did anything.
    assert c.get("/api/v1/me").status_code == 200


def test_the_right_csrf_token_lets_a_form_through_as_field_header_or_multipart(live_server):
    c = live_server.login("pharm_h1")
    token = page_csrf(c)
    assert c.post("/language", data={"lang": "fr", "csrf_token": token}).status_code == 303
    assert c.post("/language", data={"lang": "en"}, headers={"X-CSRF-Token": token}).status_code == 303
    assert c.post("/language", files={"lang": (None, "ar"), "csrf_token": (None, token)}).status_code == 303
    assert c.get("/api/v1/me").json()["language"] == "ar"
    # The pre-login token does not serve once logged in.
    other = live_server.client()
    pre = csrf_of(other.get("/login").text)
    assert c.post("/language", data={"lang": "fr", "csrf_token": pre}).status_code == 403


def test_paging_numbers_beyond_the_database_integers_are_refused_not_a_500(live_server):
    """Found by fuzzing: an offset past 2**63 reached the database driver and came back a 500."""
    c = live_server.client(headers=bearer(issue_token(live_server, "admin")))
    huge = str(2**64 + 7)
    for url, field in ((f"/api/v1/flags?offset={huge}", "offset"), (f"/api/v1/stock/on-hand?offset={huge}", "offset"),
                       (f"/api/v1/audit?before={huge}", "before")):
        r = c.get(url)
        assert r.status_code == 422, (url, r.status_code, r.text[:300])
        assert r.json()["error"]["field"] == field
    # The largest allowed numbers are answered, with nothing.
    assert c.get(f"/api/v1/flags?offset={2**31 - 1}").json()["flags"] == []
    assert c.get(f"/api/v1/audit?before={2**63 - 1}").status_code == 200
