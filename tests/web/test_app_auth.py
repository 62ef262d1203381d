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
    home = c.get("/", follow_redirects=True)
    assert home.status_code == 200 and "pharm_h1" in home.text
    # Only the token's hash is stored.
    token = c.cookies[auth.SESSION_COOKIE]
    with live_server.Session() as s:
        hashes = s.scalars(select(WebSession.token_hash)).all()
    assert auth.token_hash(token) in hashes and token not in hashes


@pytest.mark.parametrize("web_settings", [make_settings(trusted_proxies=["127.0.0.1"])])
def test_cookie_is_secure_when_the_request_came_over_https(live_server, web_settings):
    # X-Forwarded-Proto is believed from the configured proxy (127.0.0.1), as behind a local TLS proxy. httpx rightly
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


def from_address(live_server, ip: str):
    """A browser whose requests a configured proxy (on loopback) says come from ``ip``."""
    return live_server.client(headers={"X-Forwarded-For": ip})


class TestThrottling:
    @pytest.fixture
    def web_settings(self):
        return make_settings(login_max_failures=3, login_backoff_seconds=60, login_backoff_max_minutes=60,
                             login_max_names_per_ip=4, login_max_failures_per_account=6, login_window_minutes=15,
                             trusted_proxies=["127.0.0.1"])

    def test_a_name_waits_only_at_the_address_it_failed_from_with_growing_waits(self, live_server):
        a = from_address(live_server, "10.0.0.1")
        for _ in range(3):
            assert login(a, "pharm_h1", "wrong-password-x").status_code == 401
        r = login(a, "pharm_h1")  # even the right password waits
        assert r.status_code == 429 and "Too many failed logins" in r.text
        assert int(r.headers["retry-after"]) == 60
        assert login(a, "PHARM_H1 ").status_code == 429  # the same name however typed
        assert login(a, "pharm_hc2").status_code == 303  # another user at that address is not affected
        # The account is not locked: its owner logs in from where they are.
        assert login(from_address(live_server, "10.0.0.2"), "pharm_h1").status_code == 303
        with live_server.Session() as s:
            # Refused attempts are not counted: they cannot push the wait forward.
            assert s.scalar(select(func.count()).select_from(LoginAttempt).where(
                LoginAttempt.username == "pharm_h1", LoginAttempt.ip == "10.0.0.1")) == 3
            assert s.scalars(select(AuditRecord.detail).where(AuditRecord.action == "login_refused")).first() \
                == '{"by": "pair"}'
        age_attempts(live_server, timedelta(seconds=61), username="pharm_h1")
        assert login(a, "pharm_h1", "wrong-password-x").status_code == 401  # one more try, and it fails
        r = login(a, "pharm_h1")
        assert r.status_code == 429 and int(r.headers["retry-after"]) == 120  # the wait doubled
        age_attempts(live_server, timedelta(seconds=61), username="pharm_h1")
        assert login(a, "pharm_h1").status_code == 429
        age_attempts(live_server, timedelta(seconds=60), username="pharm_h1")
        assert login(a, "pharm_h1").status_code == 303

    def test_a_sweep_from_one_address_holds_up_only_names_never_seen_there(self, live_server):
        nat = "10.9.9.9"  # a hospital behind one address
        assert login(from_address(live_server, nat), "pharm_hc2").status_code == 303
        c = from_address(live_server, nat)
        for i in range(4):
            assert login(c, f"guess{i}", "wrong-password-x").status_code == 401
        assert login(c, "guess9", "wrong-password-x").status_code == 429
        assert login(c, "pharm_h1").status_code == 429  # never logged in from here
        assert login(from_address(live_server, nat), "pharm_hc2").status_code == 303  # works on
        assert login(from_address(live_server, "10.9.9.10"), "pharm_h1").status_code == 303
        age_attempts(live_server, timedelta(minutes=16))
        assert login(from_address(live_server, nat), "pharm_h1").status_code == 303

    def test_guesses_spread_over_addresses_hold_up_the_name_only_from_new_addresses(self, live_server):
        assert login(from_address(live_server, "192.168.1.5"), "pharm_h1").status_code == 303  # at work
        for i in range(6):
            assert login(from_address(live_server, f"203.0.113.{i}"), "pharm_h1", "wrong-password-x").status_code == 401
        assert login(from_address(live_server, "203.0.113.99"), "pharm_h1").status_code == 429
        assert login(from_address(live_server, "192.168.1.5"), "pharm_h1").status_code == 303


def test_forwarded_for_is_believed_only_from_configured_proxies(live_server):
    """Without a configured proxy a rotating X-Forwarded-For changes nothing: every try counts
    against the connecting address."""
    for i in range(5):
        assert login(from_address(live_server, f"10.7.0.{i}"), "pharm_h1", "wrong-password-x").status_code == 401
    assert login(from_address(live_server, "10.7.0.99"), "pharm_h1").status_code == 429
    with live_server.Session() as s:
        assert set(s.scalars(select(LoginAttempt.ip))) == {"127.0.0.1"}


@pytest.mark.parametrize("web_settings", [make_settings(trusted_proxies=["127.0.0.1"])])
def test_a_configured_proxy_gives_the_client_address_it_saw(live_server, web_settings):
    # The proxy appends the address it saw; what the client put before it is not believed.
    c = live_server.client(headers={"X-Forwarded-For": "1.2.3.4, 10.0.0.7"})
    assert login(c, "pharm_h1").status_code == 303
    with live_server.Session() as s:
        assert s.scalars(select(AuditRecord.ip).where(AuditRecord.action == "login")).one() == "10.0.0.7"


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
    home = c.get("/", follow_redirects=True)
    assert 'lang="ar"' in home.text and 'dir="rtl"' in home.text
    # Kept on the user: another browser of the same user sees Arabic too.
    assert 'lang="ar"' in live_server.login("pharm_h1").get("/", follow_redirects=True).text
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
