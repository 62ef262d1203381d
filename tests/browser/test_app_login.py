"""Logging in through the real app in a browser: the login form, a wrong password, the home page
by role and scope, the language switch (Arabic right-to-left) and logging out."""

from __future__ import annotations

import pytest

from stock.db import session_factory
from stock.ledger import post
from stock.settings import Settings
from tests.stock.builders import build_world, entry
from tests.web.conftest import CHEAP_HASHING, PASSWORD

# argon2id at a cost fit for tests: the same algorithm and code path, milliseconds per hash.


def _settings() -> Settings:
    return Settings(_env_file=None, secret_key="browser-test-secret-" + "k" * 32, web=CHEAP_HASHING)


@pytest.fixture
def app_site(sqlite_engine, live_server):
    from web.app import create_app
    from web.cli_web import create_user

    settings = _settings()
    Session = session_factory(sqlite_engine)  # noqa: N806 - a session factory
    with Session() as s:
        build_world(s)
        post(s, [entry("receipt", 1500, facility="H1", item="MOR10", lot="L1"),
                 entry("receipt", 40, facility="HC2", item="INSG", lot="L2")])
        create_user(s, "amina", "pharmacist", PASSWORD, facility="H1", display_name="Amina Ben Ali",
                    web=settings.web)
        create_user(s, "karim", "facility_manager", PASSWORD, facility="H1", language="ar",
                    display_name="Karim", web=settings.web)
        s.commit()
    return live_server(create_app(sqlite_engine, settings))


def _log_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#f-username", username)
    page.fill("#f-password", password)
    page.click("form[action='/login'] button[type=submit]")


def test_pharmacist_logs_in_after_a_wrong_password_and_sees_home(app_site, browser_page, screenshot):
    page = browser_page
    page.goto(f"{app_site}/")
    assert "/login" in page.url  # nothing is shown before logging in
    _log_in(page, app_site, "amina", "not-the-password")
    assert page.locator("p.form-error").inner_text() == "Wrong username or password."
    assert page.input_value("#f-username") == "amina"  # typed name kept, password not
    assert page.input_value("#f-password") == ""
    screenshot("en-login-error")

    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_selector("nav.pharmacy-nav")  # a pharmacist lands on their pharmacy's counter
    assert page.url.endswith("/visit")
    nav = page.locator("nav .nav-links a").all_inner_texts()
    assert nav[:2] == ["Pharmacy", "Requisitions"]
    page.goto(f"{app_site}/overview")
    page.wait_for_selector("table#positions")
    assert page.locator("h1").inner_text() == "Welcome, Amina Ben Ali"
    rows = page.locator("table#positions tbody tr").all_inner_texts()
    assert len(rows) == 1 and "Tripoli Central Hospital" in rows[0] and "MOR10" in rows[0]
    assert "1,500" in rows[0]
    assert page.evaluate("() => typeof window.htmx") == "object"
    screenshot("en-home")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console

    page.click("form[action='/logout'] button[type=submit]")
    page.wait_for_selector("form[action='/login']")
    page.goto(f"{app_site}/")
    assert "/login" in page.url


def test_language_follows_the_user_and_the_switcher(app_site, browser_page, screenshot):
    page = browser_page
    _log_in(page, app_site, "karim", PASSWORD)
    page.wait_for_url("**/stock/**")  # a manager lands on their stock dashboard
    page.goto(f"{app_site}/overview")
    page.wait_for_selector("table#positions")
    # Karim chose Arabic: right-to-left, Arabic words, navigation of a facility manager.
    assert page.evaluate("() => [document.documentElement.lang, document.documentElement.dir]") == ["ar", "rtl"]
    assert page.locator("h2").first.inner_text() == "نظرة سريعة على المخزون"
    assert page.locator("nav .nav-links a").all_inner_texts()[:2] == ["المخزون", "انتهاء الصلاحية"]
    screenshot("ar-home")
    # Choosing French in the switcher applies at once (dawa.js submits the form) and is kept.
    page.select_option("#lang-select", "fr")
    page.wait_for_function("() => document.documentElement.lang === 'fr'")
    assert page.evaluate("() => document.documentElement.dir") == "ltr"
    assert page.locator("h2").first.inner_text() == "Le stock en un coup d’œil"
    page.goto(f"{app_site}/overview")
    assert page.evaluate("() => document.documentElement.lang") == "fr"
    screenshot("fr-home")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
