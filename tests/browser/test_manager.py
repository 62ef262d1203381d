"""A facility manager in a browser: the stock dashboard with its consumption chart drawn, an
item's lots brought in on demand (htmx), and the stock card opened from the table."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from stock.db import session_factory
from stock.ledger import post
from stock.settings import Settings
from tests.stock.builders import build_world, entry
from tests.web.conftest import CHEAP_HASHING, PASSWORD


@pytest.fixture
def manager_site(sqlite_engine, live_server):
    from web.app import create_app
    from web.admin.service import create_user

    settings = Settings(_env_file=None, secret_key="browser-test-secret-" + "m" * 32, web=CHEAP_HASHING)
    today = datetime.now(ZoneInfo(settings.default_timezone)).date()
    month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    t = datetime.combine(month, time(10), tzinfo=timezone.utc)
    Session = session_factory(sqlite_engine)  # noqa: N806 - a session factory
    with Session() as s:
        build_world(s)
        post(s, [entry("receipt", 120, facility="H1", item="MOR10", lot="L1", at=t),
                 entry("receipt", 40, facility="H1", item="MOR10", lot="L0", expiry_date=today + timedelta(days=25),
                       at=t),
                 entry("dispense", 30, facility="H1", item="MOR10", lot="L1", at=t + timedelta(days=1),
                       entry_id="D-1")])
        create_user(s, "karim", "facility_manager", PASSWORD, facility="H1", display_name="Karim Haddad",
                    web=settings.web)
        s.commit()
    return live_server(create_app(sqlite_engine, settings))


def test_manager_sees_dashboard_chart_and_stock_card(manager_site, browser_page, screenshot):
    base = manager_site
    page = browser_page
    page.goto(f"{base}/login")
    page.fill("#f-username", "karim")
    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    page.click("nav .nav-links a:text('Stock')")
    page.wait_for_selector("table#positions")
    assert page.url.endswith("/stock/H1")

    # The chart is drawn: a canvas with a Chart.js instance holding the monthly figures.
    page.wait_for_function("() => window.Chart && !!Chart.getChart(document.getElementById('use-chart'))")
    values = page.evaluate("() => Chart.getChart(document.getElementById('use-chart')).data.datasets[0].data")
    assert len(values) == 12 and float(values[-2]) == 30
    assert page.locator("#expiring-lots tr[data-lot='L0'][data-window='30']").count() == 1

    # The lots of an item arrive on demand.
    page.click("table#positions tr[data-item='MOR10'] button.lots-button")
    page.wait_for_selector("table.lots[data-lots-of='MOR10'] tr[data-lot='L1']")
    assert page.locator("table.lots tr[data-lot='L1']").get_attribute("data-on-hand") == "90"
    screenshot("manager-dashboard")

    page.click("table#positions tr[data-item='MOR10'] a")
    page.wait_for_selector("table#card")
    assert page.url.endswith("/stock/H1/card/MOR10")
    assert page.locator("#closing").inner_text().strip() == "130"
    assert page.locator("table#card tr[data-entry='D-1']").get_attribute("data-balance") == "130"
    page.wait_for_function("() => window.Chart && !!Chart.getChart(document.getElementById('card-chart'))")
    screenshot("manager-stock-card")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
