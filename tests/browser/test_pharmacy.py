"""A pharmacist dispenses in a browser: the item list and the lots come in as they type (htmx), a
quantity over what is on hand comes back refused next to the field with everything typed kept,
and the corrected form is recorded."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from stock.db import session_factory
from stock.ledger import post
from stock.models import LedgerEntry
from stock.settings import Settings
from tests.stock.builders import build_world, entry
from tests.web.conftest import CHEAP_HASHING, PASSWORD


@pytest.fixture
def pharmacy_site(sqlite_engine, live_server):
    from web.app import create_app
    from web.admin.service import create_user

    settings = Settings(_env_file=None, secret_key="browser-test-secret-" + "p" * 32, web=CHEAP_HASHING)
    Session = session_factory(sqlite_engine)  # noqa: N806 - a session factory
    with Session() as s:
        build_world(s)
        post(s, [entry("receipt", 120, facility="H1", item="MOR10", lot="L1"),
                 entry("receipt", 40, facility="H1", item="MOR10", lot="L0", expiry_date=date(2027, 3, 31))])
        create_user(s, "amina", "pharmacist", PASSWORD, facility="H1", display_name="Amina Ben Ali",
                    web=settings.web)
        s.commit()
    return live_server(create_app(sqlite_engine, settings)), Session


def test_pharmacist_dispenses_with_an_error_then_success(pharmacy_site, browser_page, screenshot):
    base, Session = pharmacy_site  # noqa: N806
    page = browser_page
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    page.goto(f"{base}/login")
    page.fill("#f-username", "amina")
    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    # A pharmacist lands on their facility's counter.
    page.wait_for_selector("form#dispense-form")
    assert page.url.endswith("/pharmacy/H1/dispense")

    page.fill("#f-health_card_id", "LY0000000001")
    page.locator("#f-item_code").press_sequentially("MOR", delay=50)
    page.wait_for_function("() => document.querySelectorAll('#item-options option').length === 1")
    assert page.locator("#item-options option").get_attribute("value") == "MOR10"
    page.fill("#f-item_code", "MOR10")
    page.dispatch_event("#f-item_code", "change")
    # The lots arrive first-expiry-first-out, the earliest selected; the open prescription too.
    page.wait_for_function("() => document.querySelectorAll('#f-lot_number option').length === 2")
    assert page.locator("#f-lot_number").input_value() == "L0"
    page.wait_for_function("() => !!document.querySelector('#f-prescription_id option[value=RX1]')")
    assert page.locator("#f-prescription_id").input_value() == "RX1"
    page.fill("#f-quantity", "500")
    page.click("#dispense-form button[type=submit]")

    page.wait_for_selector("#f-quantity-error")
    assert page.locator("#f-quantity-error").inner_text() == "Not enough stock in lot L0: 40 on hand, 500 asked."
    assert page.input_value("#f-quantity") == "500"
    assert page.input_value("#f-health_card_id") == "LY0000000001"
    assert page.input_value("#f-item_code") == "MOR10"
    assert page.locator("#f-lot_number").input_value() == "L0"
    screenshot("pharmacy-dispense-error")

    page.fill("#f-quantity", "20")
    page.click("#dispense-form button[type=submit]")
    page.wait_for_selector("#done")
    assert "MOR10" in page.locator("#done").inner_text()
    screenshot("pharmacy-dispense-done")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
    # The card the pharmacist typed went in request bodies only: no URL the page asked for holds it.
    assert any(url.endswith("/pharmacy/H1/prescriptions") for url in sent), sent
    assert not [url for url in sent if "LY0000000001" in url]

    with Session() as s:
        (e,) = s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "dispense"))
        assert (e.quantity, e.recorded_by, e.prescription_ref) == (20, "amina", "RX1")
