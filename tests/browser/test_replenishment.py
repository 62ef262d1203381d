"""Preparing and approving a requisition in Arabic, in a browser: the pharmacist prepares March's
requisition, raises a quantity with a reason (refused without one) and submits it; the region's
manager cuts it with a reason and approves it. The page is right-to-left throughout."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from stock.db import session_factory
from stock.ledger import post
from stock.settings import Settings
from tests.stock.builders import build_world, entry
from tests.web.conftest import CHEAP_HASHING, PASSWORD


@pytest.fixture
def site(sqlite_engine, live_server):
    from web.app import create_app
    from web.admin.service import create_user

    settings = Settings(_env_file=None, secret_key="browser-test-secret-" + "r" * 32, web=CHEAP_HASHING)
    Session = session_factory(sqlite_engine)  # noqa: N806 - a session factory
    with Session() as s:
        build_world(s)
        t = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
        post(s, [entry("receipt", 100, facility="H1", at=t), entry("dispense", 30, facility="H1", at=t),
                 entry("receipt", 500, facility="WH-C", lot="S1", expiry_date=date(2028, 1, 31), at=t),
                 entry("dispense", 5, facility="H1", at=datetime.now(timezone.utc) - timedelta(days=40))])
        create_user(s, "salma", "pharmacist", PASSWORD, facility="H1", web=settings.web)
        create_user(s, "omar", "facility_manager", PASSWORD, region="Tripoli", web=settings.web)
        from sqlalchemy import update

        from stock.models import User
        s.execute(update(User).values(language="ar"))
        s.commit()
    return live_server(create_app(sqlite_engine, settings))


def login(page, base, username):
    page.goto(f"{base}/login")
    page.fill("#f-username", username)
    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()


def test_prepare_and_approve_a_requisition_in_arabic(site, browser, tmp_path):
    base = site
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    login(page, base, "salma")
    page.click("nav .nav-links a:text('الطلبيات')")
    page.wait_for_selector("#new-H1")
    assert page.locator("html").get_attribute("dir") == "rtl"
    page.click("#new-H1")
    page.fill("#f-period", "2026-03")
    page.click("#prepare-form button[type=submit]")
    page.wait_for_selector("table#lines tr[data-item='MOR10']")
    row = page.locator("table#lines tr[data-item='MOR10']")
    assert row.get_attribute("data-closing") == "70" and row.get_attribute("data-suggested") == "23"  # AMC 31: a day out before the first receipt
    page.fill("#qty-MOR10", "60")
    page.click("#save-lines")
    page.wait_for_selector("#err-MOR10")
    assert "تحتاج إلى سبب" in page.locator("#err-MOR10").inner_text()
    assert page.input_value("#qty-MOR10") == "60"  # what was typed is kept
    page.fill("#reason-MOR10", "حملة تطعيم")
    page.click("#save-lines")
    page.wait_for_selector("table#lines tr[data-item='MOR10'][data-requested='60']")
    page.click("#submit")
    page.wait_for_selector("#req-status .status-submitted")
    assert page.locator("#req-status").inner_text().strip() == "مُرسلة"
    page.screenshot(path=str(tmp_path / "ar-requisition-submitted.png"), full_page=True)
    context.close()

    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    login(page, base, "omar")
    page.goto(f"{base}/requisitions/REQ-H1-2026-03")
    assert page.locator("html").get_attribute("dir") == "rtl"
    page.fill("#qty-MOR10", "40")
    page.click("#approve")
    page.wait_for_selector("#err-MOR10")  # a cut needs a reason too
    page.fill("#reason-MOR10", "مخزون المستودع محدود")
    page.click("#approve")
    page.wait_for_selector("#req-status .status-approved")
    assert page.locator("table#lines tr[data-item='MOR10']").get_attribute("data-approved") == "40"
    timeline = page.locator("#timeline").inner_text()
    assert "salma" in timeline and "omar" in timeline and "اعتماد" not in timeline
    assert page.locator("#timeline li[data-action='approved']").count() == 1
    page.screenshot(path=str(tmp_path / "ar-requisition-approved.png"), full_page=True)

    # The store's dashboard brings in the stock levels (htmx): H1 holds far more than its maximum.
    page.goto(f"{base}/stock/H1")
    page.wait_for_selector("#levels-summary li[data-status='above_max']")
    assert page.locator("#levels-summary li[data-status='above_max']").get_attribute("data-count") == "1"
    assert "فوق الحد الأقصى" in page.locator("#levels-summary").inner_text()
    context.close()
