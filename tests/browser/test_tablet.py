"""Every page in the nav, for every role, on an 800x1280 tablet and a 1366x768 laptop, in English,
French and Arabic: the page is never wider than the screen (wide tables scroll inside their own box),
and every link, button and field in the header and the page's content is at least 44 px tall, big
enough for a finger.

Screenshots of each page are saved as ``<role>-<lang>-<width>-<page>.png``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from anomaly import scan
from sample_data import SMALL
from stock.db import session_factory
from stock.importer import import_dataset
from stock.ledger import post
from stock.settings import Settings
from tests.browser.conftest import _Server
from tests.conftest import make_sqlite
from tests.stock.builders import entry
from tests.web.conftest import CHEAP_HASHING, PASSWORD

SCREENS = {"tablet": (800, 1280), "laptop": (1366, 768)}
MIN_TAP = 44
# Room to read what one typed: text fields (a reversal's reason was once 60 px) and quantities.
MIN_FIELD_WIDTH = 120
MIN_NUMBER_WIDTH = 80  # number fields, and text fields that open a number keypad

# Who signs in, and where they work.
USERS = {
    "pharmacist": ("amina", {"facility": "TRP-H01"}),
    "facility_manager": ("karim", {"facility": "TRP-H01"}),
    "auditor": ("salma", {"region": "Tripoli"}),
    "admin": ("root", {}),
}

# Elements allowed under 44 px, each with its reason. (selector matched with Element.matches)
SMALL_ALLOWED = {
    "input[type=checkbox], input[type=radio]": "a box whose label is the tap target",
    "input[type=hidden]": "not shown",
}

_MEASURE = """(minTap) => {
  const main = document.querySelector('main');
  const allowed = %s;
  const small = [];
  for (const el of document.querySelectorAll(
      'header a, header button, header input, header select, ' +
      'main a, main button, main input, main select, main textarea')) {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (box.width === 0 || box.height === 0 || style.visibility === 'hidden') continue;
    if (allowed.some(sel => el.matches(sel))) continue;
    if (el.closest('label') && el.tagName === 'A') continue;
    if (box.height < minTap - 0.5) {
      small.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' +
                 (el.innerText || el.value || el.name || '').trim().slice(0, 30) + '" ' +
                 Math.round(box.height) + 'px');
    }
  }
  const narrow = [];
  for (const el of main.querySelectorAll('input, select, textarea')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || allowed.some(sel => el.matches(sel))) continue;
    if (box.width < (el.type === 'number' || ['decimal', 'numeric'].includes(el.inputMode) ? %d : %d)) narrow.push((el.id || el.name) + ' ' + Math.round(box.width) + 'px');
  }
  const unwrapped = Array.from(main.querySelectorAll('table'))
    .filter(t => !t.closest('.table-wrap')).map(t => t.id || t.className);
  return {scrollWidth: document.scrollingElement.scrollWidth, small: small, narrow: narrow,
          unwrapped: unwrapped};
}"""


@pytest.fixture(scope="module")
def tablet_site(tmp_path_factory):
    from web.app import create_app
    from web.cli_web import create_user

    engine = make_sqlite(tmp_path_factory.mktemp("tablet"))
    settings = Settings(_env_file=None, secret_key="browser-test-secret-" + "t" * 32, web=CHEAP_HASHING)
    Session = session_factory(engine)  # noqa: N806 - a session factory
    with Session() as s:
        import_dataset(s, SMALL)
        for role, (username, where) in USERS.items():
            create_user(s, username, role, PASSWORD, display_name=f"{username.title()} Ben Ali",
                        web=settings.web, **where)
        s.commit()
        scan.run(s)
        s.commit()
        # A few of today's entries by the pharmacist, with long lot numbers, for "Today's entries".
        now = datetime.now(timezone.utc)
        lot = "LOT-2026-TRIPOLI-000123456"
        post(s, [entry("receipt", 500, facility="TRP-H01", item="PCM500T", lot=lot, recorded_by="amina",
                       counterparty_code="TRP-WH", at=now - timedelta(minutes=30)),
                 entry("dispense", 20, facility="TRP-H01", item="PCM500T", lot=lot, recorded_by="amina",
                       health_card_id="LY0000000001", at=now - timedelta(minutes=20)),
                 entry("loss", 3, facility="TRP-H01", item="PCM500T", lot=lot, recorded_by="amina",
                       at=now - timedelta(minutes=10))])
        s.commit()
    server = _Server(create_app(engine, settings))
    yield server.start()
    server.stop()
    engine.dispose()


def _sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#f-username", username)
    page.fill("#f-password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()


def _nav_pages(page, base: str) -> list[str]:
    """The pages the header nav leads to, then those of the pharmacy sub-nav, and a flag's case."""
    hrefs = page.eval_on_selector_all("header nav a[href^='/']", "els => els.map(a => a.getAttribute('href'))")
    found: list[str] = []
    for href in hrefs:
        if href not in found:
            found.append(href)
    for href in list(found):
        if href.startswith("/pharmacy") or href == "/flags":
            page.goto(base + href)
            more = page.eval_on_selector_all(
                "main nav.pharmacy-nav a[href^='/pharmacy/'], table#flag-queue tbody tr:first-child a",
                "els => els.map(a => a.getAttribute('href'))")
            found += [m for m in more if m not in found]
    return found


def _slug(href: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", href.lower()).strip("-")[:40] or "home"


@pytest.mark.parametrize("screen", list(SCREENS))
@pytest.mark.parametrize("lang", ["en", "fr", "ar"])
@pytest.mark.parametrize("role", list(USERS))
def test_every_nav_page_fits_the_screen_with_finger_sized_targets(tablet_site, browser_page, screenshot,
                                                                 role, lang, screen):
    page = browser_page
    width, height = SCREENS[screen]
    page.set_viewport_size({"width": width, "height": height})
    page.set_extra_http_headers({"Accept-Language": lang})
    _sign_in(page, tablet_site, USERS[role][0])
    assert page.evaluate("() => document.documentElement.lang") == lang
    pages = ["/"] + _nav_pages(page, tablet_site)
    assert len(pages) >= 4, pages
    measure = _MEASURE % (repr(list(SMALL_ALLOWED)), MIN_NUMBER_WIDTH, MIN_FIELD_WIDTH)
    problems = []
    for href in pages:
        response = page.goto(tablet_site + href)
        assert response.status == 200, (href, response.status)
        page.wait_for_load_state()
        got = page.evaluate(measure, MIN_TAP)
        screenshot(f"{role}-{lang}-{width}-{_slug(href)}")
        if got["scrollWidth"] > width:
            problems.append(f"{href}: {got['scrollWidth']} px wide")
        if got["small"]:
            problems.append(f"{href}: under {MIN_TAP} px: {got['small'][:6]} ({len(got['small'])})")
        if got["narrow"]:
            problems.append(f"{href}: fields under {MIN_FIELD_WIDTH} px wide: {got['narrow'][:6]}")
        if href.endswith("/today") and lang == "fr" and screen == "tablet":
            # The widest table of all (long lot numbers, French headers) is wider than the screen
            # and scrolls inside its box, the page staying 800 px.
            wrap = page.evaluate("() => { const w = document.querySelector('#entries').closest('.table-wrap');"
                                 " return [w.scrollWidth, w.clientWidth]; }")
            assert wrap[0] > wrap[1], wrap
        if got["unwrapped"]:  # a table scrolls inside its own box, never the page
            problems.append(f"{href}: tables outside a .table-wrap: {got['unwrapped']}")
    assert problems == [], "\n".join(problems)
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
