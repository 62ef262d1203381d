"""An auditor works a flag in a browser: opens the queue, opens the most suspicious flag, takes
it, confirms it, and sees both steps in the timeline. Screenshots of the queue and the case."""

from __future__ import annotations


import pytest
from sqlalchemy import select

from anomaly import scan
from anomaly.models import Flag, FlagEvent
from stock.db import session_factory
from stock.importer import import_dataset
from stock.settings import Settings
from tests.web.conftest import CHEAP_HASHING, PASSWORD
from sample_data import SMALL



@pytest.fixture
def audit_site(sqlite_engine, live_server):
    from web.app import create_app
    from web.admin.service import create_user

    settings = Settings(_env_file=None, secret_key="browser-test-secret-" + "a" * 32, web=CHEAP_HASHING)
    Session = session_factory(sqlite_engine)  # noqa: N806 - a session factory
    with Session() as s:
        import_dataset(s, SMALL)
        create_user(s, "salma", "auditor", PASSWORD, region="Tripoli", display_name="Salma Auditor",
                    web=settings.web)
        s.commit()
        scan.run(s)
        s.commit()
    return live_server(create_app(sqlite_engine, settings)), Session


def test_auditor_confirms_a_flag(audit_site, browser_page, screenshot):
    base, Session = audit_site  # noqa: N806
    page = browser_page
    page.goto(f"{base}/login")
    page.fill("#f-username", "salma")
    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    page.click("nav .nav-links a:text('Flags')")
    page.wait_for_selector("table#flag-queue")
    facilities = page.locator("table#flag-queue tbody tr td:nth-child(6)").all_inner_texts()
    assert facilities and all(f.startswith("TRP-") for f in facilities)  # her region only
    screenshot("auditor-queue")

    first = page.locator("table#flag-queue tbody tr").first
    flag_id = first.get_attribute("data-flag")
    first.locator("a").click()
    page.wait_for_selector("#reasons")
    assert flag_id in page.url
    page.wait_for_selector("canvas#consumption-vs-peers")

    page.click("#form-assign button[type=submit]")  # to herself, chosen by default
    page.wait_for_selector("#done")
    page.fill("#f-comment", "Dispensed after the patient's death; confirmed with the facility.")
    page.click("#do-confirm")
    page.wait_for_selector("#done")
    assert "Confirmed" in page.locator("#flag-status").inner_text()
    steps = page.locator("#flag-timeline li")
    assert steps.count() == 2
    assert [steps.nth(i).get_attribute("data-action") for i in range(2)] == ["assign", "confirm"]
    assert "salma" in steps.nth(1).inner_text() and "confirmed with the facility" in steps.nth(1).inner_text()
    screenshot("auditor-flag-confirmed")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console

    with Session() as s:
        assert s.get(Flag, flag_id).status == "confirmed"
        assert [(e.action, e.by) for e in s.scalars(select(FlagEvent).where(FlagEvent.flag_id == flag_id)
                                                    .order_by(FlagEvent.id))] == [("assign", "salma"),
                                                                                  ("confirm", "salma")]
