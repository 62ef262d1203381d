"""An admin opens the items page from the navigation and searches it as she types (htmx swaps the
results in, the address follows); an auditor who reads Arabic opens the audit trail, laid out
right to left, and finds her own and her region's records only. Screenshots of both."""

from __future__ import annotations


import pytest
from sqlalchemy import select

from stock.db import session_factory
from stock.importer import import_dataset
from stock.models import Facility
from stock.settings import Settings
from web import audit
from tests.web.conftest import CHEAP_HASHING, PASSWORD
from sample_data import SMALL



PATIENT_KEY = "browser-test-patient-key"


@pytest.fixture
def admin_site(sqlite_engine, live_server):
    from web.app import create_app
    from web.admin.service import create_user

    settings = Settings(_env_file=None, secret_key="browser-test-secret-" + "a" * 32, patient_id_key=PATIENT_KEY,
                        web=CHEAP_HASHING)
    Session = session_factory(sqlite_engine)  # noqa: N806 - a session factory
    with Session() as s:
        import_dataset(s, SMALL)
        create_user(s, "hana", "admin", PASSWORD, display_name="Hana Admin", web=settings.web)
        create_user(s, "salma", "auditor", PASSWORD, region="Tripoli", display_name="سلمى", language="ar",
                    web=settings.web)
        places = {f.region: f for f in s.scalars(select(Facility).order_by(Facility.code))}
        other_region = next(f for region, f in places.items() if region != "Tripoli")
        # Written outside a request, as a command writes them: under the install's patient key.
        audit.record(s, None, "patient_history_read", "patient", "LY-OUTSIDE", {"rows": 2},
                     facility_id=other_region.id, patient_key=PATIENT_KEY)
        audit.record(s, None, "patient_history_read", "patient", "LY-INSIDE", {"rows": 4},
                     facility_id=places["Tripoli"].id, patient_key=PATIENT_KEY)
        s.commit()
    yield live_server(create_app(sqlite_engine, settings))


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#f-username", username)
    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()


def test_admin_searches_items_and_an_auditor_reads_the_trail_in_arabic(admin_site, browser_page, screenshot):
    base, page = admin_site, browser_page
    _log_in(page, base, "hana")
    page.click("nav .nav-links a:text('Items')")
    page.wait_for_selector("table#items")
    everything = page.locator("table#items tbody tr").count()
    assert everything > 5
    page.fill("#f-q", "paracetamol")  # no Enter: htmx asks as she types
    page.wait_for_function("() => document.querySelectorAll('table#items tbody tr').length < %d" % everything)
    rows = page.locator("table#items tbody tr")
    assert rows.count() >= 1
    assert all("paracetamol" in t.lower() for t in rows.all_inner_texts())
    assert "q=paracetamol" in page.url  # the address follows, so the search can be shared or reloaded
    assert page.locator("#f-q").input_value() == "paracetamol"
    screenshot("admin-items-search")
    rows.first.locator("a").click()
    page.wait_for_selector("#item-form")
    screenshot("admin-item-edit")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console

    page.context.clear_cookies()
    _log_in(page, base, "salma")
    assert page.evaluate("() => document.documentElement.dir") == "rtl"
    page.click("nav .nav-links a[href='/audit']")
    page.wait_for_selector("table#audit-records")
    assert page.locator("h1").inner_text() == "سجل التدقيق"
    subjects = " ".join(page.locator("table#audit-records tbody tr").all_inner_texts())
    from stock.pseudonyms import pseudonym

    key = PATIENT_KEY
    # Her region's only, and the patient named by pseudonym, never by card.
    assert pseudonym("LY-INSIDE", key) in subjects and pseudonym("LY-OUTSIDE", key) not in subjects
    assert "LY-INSIDE" not in subjects
    # Laid out right to left: the first column (when) sits at the right edge of the table.
    first_cell, table = (page.locator(sel).bounding_box() for sel in
                         ("table#audit-records thead th:first-child", "table#audit-records"))
    assert first_cell["x"] + first_cell["width"] > table["x"] + table["width"] - 2
    screenshot("ar-audit-trail")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
