"""Logging in and out through the real app over HTTP: cookies, fresh tokens, CSRF, throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tests.web.conftest import PASSWORD, csrf_of, login, make_settings, page_csrf
from web import auth
from web.models import AuditRecord, LoginAttempt, WebSession


def set_cookie_headers(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    out = {}
    for header in response.headers.get_list("set-cookie"):
        out[header.split("=", 1)[0]] = header
    return out


def flags_of(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_login_sets_an_httponly_lax_session_cookie_and_lands_home(live_server):
    c = live_server.client()
    page = c.get("/login")
    assert page.status_code == 200
    pre = set_cookie_headers(page)[auth.PRESESSION_COOKIE]
    assert {"httponly", "path"} <= flags_of(pre) and "samesite=lax" in pre.lower()

    r = login(c, "pharm_h1")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = set_cookie_headers(r)[auth.SESSION_COOKIE]
    flags = flags_of(cookie)
    assert "httponly" in flags and "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in flags  # plain http on loopback
    home = c.get("/")
    assert home.status_code == 200 and "pharm_h1" in home.text
    # Only the token's hash is stored.
    token = c.cookies[auth.SESSION_COOKIE]
    with live_server.Session() as s:
        hashes = s.scalars(select(WebSession.token_hash)).all()
    assert auth.token_hash(token) in hashes and token not in hashes


def test_cookie_is_secure_when_the_request_came_over_https(live_server):
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as behind a local TLS proxy. httpx rightly
    # keeps Secure cookies off plain http, so the pre-login cookie is handed back by hand.
    c = live_server.client(headers={"X-Forwarded-Proto": "https"})
    page = c.get("/login")
    pre = set_cookie_headers(page)[auth.PRESESSION_COOKIE]
    assert "secure" in flags_of(pre)
    r = c.post("/login", data={"username": "pharm_h1", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
               headers={"Cookie": pre.split(";")[0]})
    assert r.status_code == 303
    assert "secure" in flags_of(set_cookie_headers(r)[auth.SESSION_COOKIE])
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_wrong_password_is_refused_and_the_typed_name_kept(live_server):
    c = live_server.client()
    r = login(c, "pharm_h1", "not-the-password")
    assert r.status_code == 401
    assert auth.SESSION_COOKIE not in set_cookie_headers(r)
    assert "Wrong username or password" in r.text
    assert 'value="pharm_h1"' in r.text
    # An unknown user gets the very same answer.
    r2 = login(c, "nobody", "not-the-password")
    assert r2.status_code == 401 and "Wrong username or password" in r2.text
    assert c.get("/").status_code == 303


def test_disabled_user_cannot_log_in_and_their_open_login_ends(live_server):
    c = live_server.login("pharm_h1")
    with live_server.Session() as s:
        user = auth.user_by_username(s, "pharm_h1")
        user.active = False
        s.commit()
    assert c.get("/api/v1/me").status_code == 401
    assert login(live_server.client(), "pharm_h1").status_code == 401


def test_each_login_gets_a_new_token_and_ends_the_one_presented(live_server):
    c = live_server.login("pharm_h1")
    first = c.cookies[auth.SESSION_COOKIE]
    live_server.login("pharm_h1", client=c)
    second = c.cookies[auth.SESSION_COOKIE]
    assert first != second
    stale = live_server.client(cookies={auth.SESSION_COOKIE: first})
    assert stale.get("/api/v1/me").status_code == 401
    fresh = live_server.client(cookies={auth.SESSION_COOKIE: second})
    assert fresh.get("/api/v1/me").json()["username"] == "pharm_h1"
    # A login from another browser is left alone.
    other = live_server.login("pharm_h1")
    assert c.get("/api/v1/me").status_code == 200 and other.get("/api/v1/me").status_code == 200


def test_logout_ends_the_login(live_server):
    c = live_server.login("pharm_h1")
    token = c.cookies[auth.SESSION_COOKIE]
    r = c.post("/logout", data={"csrf_token": page_csrf(c)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert 'max-age=0' in set_cookie_headers(r)[auth.SESSION_COOKIE].lower()
    again = live_server.client(cookies={auth.SESSION_COOKIE: token})
    assert again.get("/").status_code == 303
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 0


def test_expired_and_idle_logins_are_refused(live_server):
    c = live_server.login("pharm_h1")
    with live_server.Session() as s:
        s.execute(update(WebSession).values(expires_at=auth.now() - timedelta(seconds=1)))
        s.commit()
    assert c.get("/api/v1/me").status_code == 401
    c = live_server.login("pharm_h1")
    with live_server.Session() as s:
        s.execute(update(WebSession).values(last_seen=auth.now() - timedelta(minutes=121)))
        s.commit()
    assert c.get("/api/v1/me").status_code == 401


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(live_server):
    c = live_server.client()
    first = c.get("/api/v1/me")
    assert first.status_code == 401
    r = c.get("/?x=1")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F%3Fx%3D1"
    assert login(c, "pharm_h1", next="/?x=1").headers["location"] == "/?x=1"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert login(live_server.client(), "pharm_h1", next=evil).headers["location"] == "/"


def test_htmx_requests_are_told_to_go_to_the_login_page(live_server):
    r = live_server.client().get("/", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/login")


def test_login_form_without_a_valid_csrf_token_is_refused(live_server):
    c = live_server.client()
    c.get("/login")
    for data in ({"username": "pharm_h1", "password": PASSWORD},
                 {"username": "pharm_h1", "password": PASSWORD, "csrf_token": "forged"}):
        r = c.post("/login", data=data)
        assert r.status_code == 403
        assert auth.SESSION_COOKIE not in set_cookie_headers(r)
    # A token from another visitor's cookie does not fit this one's.
    other = live_server.client()
    token = csrf_of(other.get("/login").text)
    r = c.post("/login", data={"username": "pharm_h1", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 403
    # Without the pre-login cookie at all (a cross-site form), refused as well.
    bare = live_server.client()
    r = bare.post("/login", data={"username": "pharm_h1", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 403


def age_attempts(live_server, by: timedelta, username: str | None = None) -> None:
    """Move recorded login attempts back in time, as if ``by`` had passed since."""
    with live_server.Session() as s:
        stmt = select(LoginAttempt)
        if username:
            stmt = stmt.where(LoginAttempt.username == username)
        for attempt in s.scalars(stmt):
            attempt.at = attempt.at - by
        s.commit()


class TestThrottling:
    @pytest.fixture
    def web_settings(self):
        return make_settings(login_max_failures=3, login_max_failures_per_ip=6, login_window_minutes=15)

    def test_a_user_name_is_refused_after_repeated_failures_until_the_window_passes(self, live_server):
        c = live_server.client()
        for _ in range(3):
            assert login(c, "pharm_h1", "wrong-password-x").status_code == 401
        r = login(c, "pharm_h1")  # even the right password
        assert r.status_code == 429
        assert "Too many failed logins" in r.text and "15 minutes" in r.text
        assert int(r.headers["retry-after"]) == 15 * 60
        assert login(c, "PHARM_H1 ").status_code == 429  # the same name however typed
        assert login(c, "pharm_hc2").status_code == 303  # another user is not affected
        with live_server.Session() as s:
            refused = s.scalars(select(AuditRecord).where(AuditRecord.action == "login_refused")).all()
            assert len(refused) == 2
            # Refused attempts are not counted: they cannot push the window forward.
            assert s.scalar(select(func.count()).select_from(LoginAttempt)
                            .where(LoginAttempt.username == "pharm_h1")) == 3
        age_attempts(live_server, timedelta(minutes=15, seconds=1))
        assert login(c, "pharm_h1").status_code == 303

    def test_a_success_resets_the_count_for_the_name(self, live_server):
        c = live_server.client()
        for _ in range(2):
            login(c, "pharm_h1", "wrong-password-x")
        assert login(c, "pharm_h1").status_code == 303
        c = live_server.client()
        for _ in range(2):
            assert login(c, "pharm_h1", "wrong-password-x").status_code == 401
        assert login(c, "pharm_h1").status_code == 303

    def test_an_address_is_refused_after_repeated_failures_across_names(self, live_server):
        c = live_server.client()
        for i in range(6):
            assert login(c, f"guess{i}", "wrong-password-x").status_code == 401
        assert login(c, "pharm_hc2").status_code == 429
        # A success with an account of one's own does not reset the address's count.
        age_attempts(live_server, timedelta(minutes=16), username="guess0")
        assert login(c, "pharm_hc2").status_code == 303
        assert login(c, "guess9", "wrong-password-x").status_code == 401
        assert login(c, "pharm_h1").status_code == 429


def test_login_and_logout_leave_audit_records(live_server):
    c = live_server.client()
    login(c, "pharm_h1", "wrong-password-x")
    live_server.login("pharm_h1", client=c)
    c.post("/logout", data={"csrf_token": page_csrf(c)})
    with live_server.Session() as s:
        rows = s.execute(select(AuditRecord.action, AuditRecord.user_id, AuditRecord.object_id, AuditRecord.ip)
                         .order_by(AuditRecord.id)).all()
        user = auth.user_by_username(s, "pharm_h1")
    web_rows = [row for row in rows if row[0] in ("login_failed", "login", "logout")]
    assert [(a, uid, obj) for a, uid, obj, _ in web_rows] == [
        ("login_failed", None, "pharm_h1"), ("login", user.id, "pharm_h1"), ("logout", user.id, "pharm_h1")]
    assert all(ip == "127.0.0.1" for *_, ip in web_rows)
    # Users created from the command line are on the trail too, with no address.
    assert ("user_created", None, "pharm_h1", None) in rows


def test_language_switch_is_kept_on_the_user_and_audited(live_server):
    c = live_server.login("pharm_h1")
    r = c.post("/language", data={"lang": "ar", "csrf_token": page_csrf(c)}, headers={"Referer": "/"})
    assert r.status_code == 303
    home = c.get("/")
    assert 'lang="ar"' in home.text and 'dir="rtl"' in home.text
    # Kept on the user: another browser of the same user sees Arabic too.
    assert 'lang="ar"' in live_server.login("pharm_h1").get("/").text
    assert live_server.login("pharm_h1").get("/api/v1/me").json()["language"] == "ar"
    with live_server.Session() as s:
        rec = s.scalars(select(AuditRecord).where(AuditRecord.action == "user_language_changed")).one()
        assert rec.object_id == "pharm_h1" and '"to": "ar"' in rec.detail
    bad = c.post("/language", data={"lang": "xx", "csrf_token": page_csrf(c)})
    assert bad.status_code == 422


def test_language_before_login_is_kept_in_a_cookie(live_server):
    c = live_server.client()
    token = csrf_of(c.get("/login").text)
    r = c.post("/language", data={"lang": "fr", "csrf_token": token})
    assert r.status_code == 303 and c.cookies[auth.LANGUAGE_COOKIE] == "fr"
    assert 'lang="fr"' in c.get("/login").text
    # The browser's preference counts when nothing was chosen.
    assert 'lang="ar"' in live_server.client().get("/login", headers={"Accept-Language": "ar-LY,ar;q=0.9"}).text


def test_a_login_clears_away_dead_logins_and_old_attempts(live_server):
    stale = live_server.login("pharm_hc2")
    login(live_server.client(), "pharm_h1", "wrong-password-x")
    with live_server.Session() as s:
        for row in s.scalars(select(WebSession)):
            row.expires_at = auth.now() - timedelta(minutes=1)
        for row in s.scalars(select(LoginAttempt)):
            row.at = auth.now() - timedelta(days=31)
        s.commit()
    live_server.login("pharm_h1")
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 1
        attempts = s.scalars(select(LoginAttempt)).all()
        assert [(a.username, a.succeeded) for a in attempts] == [("pharm_h1", True)]
    assert stale.get("/api/v1/me").status_code == 401
