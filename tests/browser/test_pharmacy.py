"""A pharmacist dispenses in a browser: the item list and the lots come in as they type (htmx), a
quantity over what is on hand comes back refused next to the field with everything typed kept,
and the corrected form is recorded."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, update

from stock.db import session_factory
from stock.ledger import post
from stock.models import Item, LedgerEntry
from stock.settings import Settings
from tests.stock.builders import build_world, entry
from tests.web.conftest import CHEAP_HASHING, PASSWORD
from tests.web.test_pharmacy import PACK


@pytest.fixture
def pharmacy_site(sqlite_engine, live_server):
    from web.app import create_app
    from web.cli_web import create_user

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
    # A pharmacist lands on their facility's counter (a visit); one item at a time is a page away.
    page.wait_for_selector("nav.pharmacy-nav")
    assert page.url.endswith("/pharmacy/H1/visit")
    page.goto(f"{base}/pharmacy/H1/dispense")
    page.wait_for_selector("form#dispense-form")

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


@pytest.fixture
def visit_site(sqlite_engine, live_server):
    """H1 with several items in several lots (morphine packs bearing a GTIN), and a pharmacist."""
    from web.app import create_app
    from web.cli_web import create_user

    settings = Settings(_env_file=None, secret_key="browser-test-secret-" + "v" * 32, web=CHEAP_HASHING)
    Session = session_factory(sqlite_engine)  # noqa: N806 - a session factory
    with Session() as s:
        build_world(s)
        post(s, [entry("receipt", 120, facility="H1", item="MOR10", lot="L1"),
                 entry("receipt", 40, facility="H1", item="MOR10", lot="L0", expiry_date=date(2027, 3, 31)),
                 entry("receipt", 3, facility="H1", item="INSG", lot="I-1", expiry_date=date(2027, 2, 28)),
                 entry("receipt", 10, facility="H1", item="INSG", lot="I-2", expiry_date=date(2027, 9, 30)),
                 entry("receipt", 6, facility="H1", item="GLOVE", lot="G-1", expiry_date=date(2027, 1, 31)),
                 entry("receipt", 100, facility="H1", item="GLOVE", lot="G-2", expiry_date=date(2029, 1, 31))])
        s.execute(update(Item).where(Item.code == "MOR10").values(gtin="05012345678900"))
        create_user(s, "amina", "pharmacist", PASSWORD, facility="H1", display_name="Amina Ben Ali",
                    web=settings.web)
        s.commit()
    return live_server(create_app(sqlite_engine, settings)), Session


def test_pharmacist_records_a_multi_item_visit_on_a_tablet(visit_site, browser_page, screenshot):
    """On an 800 px tablet: the card once, lines filled with htmx (lots proposed first expiry first,
    one part changed by hand, a line added and filled by scanning a pack), one submit for the
    whole visit."""
    base, Session = visit_site  # noqa: N806
    page = browser_page
    page.set_viewport_size({"width": 800, "height": 1280})
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    page.goto(f"{base}/login")
    page.fill("#f-username", "amina")
    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    page.click("nav.pharmacy-nav a[href='/pharmacy/H1/visit']")
    page.wait_for_selector("form#visit-form")

    page.fill("#f-health_card_id", "LY0000000001")
    page.press("#f-health_card_id", "Tab")
    page.wait_for_selector("#history-empty")  # nothing in the last 90 days, read (and audited) beside the form

    def fill_line(i: int, item: str, quantity: str) -> None:
        page.fill(f"#f-l{i}_item", item)
        page.press(f"#f-l{i}_item", "Tab")  # leaving the field commits it (change): the lots come in
        page.wait_for_selector(f"#lots-{i}")
        page.fill(f"#f-l{i}_quantity", quantity)
        page.press(f"#f-l{i}_quantity", "Tab")
        page.wait_for_function(f"() => document.querySelector('[name=l{i}_split_for]').value === '{quantity}'")

    fill_line(1, "MOR10", "15")
    assert page.input_value("#f-l1_take1") == "15"  # L0, expiring first
    assert page.locator("#f-l1_prescription").input_value() == "RX1"  # the open prescription, proposed
    fill_line(2, "INSG", "5")
    assert [page.input_value("#f-l2_take1"), page.input_value("#f-l2_take2")] == ["3", "2"]
    fill_line(3, "GLOVE", "10")
    assert [page.input_value("#f-l3_take1"), page.input_value("#f-l3_take2")] == ["6", "4"]
    page.fill("#f-l3_take1", "0")  # the pharmacist hands out ten from the new box instead
    page.fill("#f-l3_take2", "10")
    page.click("#add-line")
    page.wait_for_selector("#f-l5_item")
    assert page.input_value("#f-l3_take2") == "10" and page.input_value("#f-l2_item") == "INSG"
    fill_line(4, "MOR10", "4")  # a second line of the same item takes what the first left
    assert page.input_value("#f-l4_take1") == "4"
    # A scanner types the pack's code and Enter into line 5's Scan field: the line fills with the
    # item, and the scanned pack's lot (L1, in hand) is proposed before the earlier-expiring L0.
    page.fill("#f-l5_scan", PACK)
    page.press("#f-l5_scan", "Enter")
    page.wait_for_function("() => document.querySelector('#f-l5_item').value === 'MOR10'")
    assert page.input_value("#f-l1_quantity") == "15"  # nothing was submitted
    page.fill("#f-l5_quantity", "1")
    page.press("#f-l5_quantity", "Tab")
    page.wait_for_function("() => document.querySelector('[name=l5_split_for]').value === '1'")
    assert page.locator("#lots-5 tr[data-lot=L1] input[name^=l5_take]").input_value() == "1"
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= 800, width
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#visit-form button, #visit-form input:not([type=hidden]), #visit-form select, #visit-form textarea'))
        .filter(el => el.getBoundingClientRect().height > 0 && el.getBoundingClientRect().height < 43.5)
        .map(el => el.id || el.name)""")
    assert small == []
    screenshot("pharmacy-visit-tablet")

    page.click("#post-visit")
    page.wait_for_load_state()
    assert page.locator("#visit-problems, #warnings").count() == 0, page.inner_text("#visit-form")[:1500]
    page.wait_for_selector("#done")
    assert "6 entries recorded for this visit" in page.locator("#done").inner_text()
    screenshot("pharmacy-visit-done")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
    assert not [url for url in sent if "LY0000000001" in url]
    with Session() as s:
        serials = {e.entry_id.rsplit("-", 2)[1]: e.serial_number for e in
                   s.scalars(select(LedgerEntry).where(LedgerEntry.serial_number.is_not(None)))}
        got = sorted((e.entry_id.rsplit("-", 2)[1:], e.quantity) for e in
                     s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "dispense",
                                                         LedgerEntry.recorded_by == "amina")))
    assert [(line, int(q)) for line, q in got] == [
        (["1", "1"], 15), (["2", "1"], 3), (["2", "2"], 2), (["3", "1"], 10), (["4", "1"], 4), (["5", "1"], 1)]
    assert serials == {"5": "PK0001"}
