"""The page layout in a real browser: vendored assets load under the CSP, htmx sends the CSRF
header, and Arabic is laid out right-to-left."""

from __future__ import annotations

import pytest

from tests.browser.pages import CSRF_TOKEN, make_app


@pytest.fixture
def site(live_server):
    return live_server(make_app())


def _assets_ready(page) -> None:
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")


def test_english_home_loads_vendored_assets_without_csp_violations(site, browser_page, screenshot):
    page = browser_page
    response = page.goto(f"{site}/?lang=en&role=facility_manager")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    _assets_ready(page)
    assert page.evaluate("() => typeof window.htmx.process") == "function"
    assert page.evaluate("() => window.htmx.version").startswith("2.")
    # Pico's stylesheet and Dawa's own both applied (not blocked, not missing).
    sheets = page.evaluate("() => Array.from(document.styleSheets).map(s => s.href)")
    assert any("pico.min.css" in (h or "") for h in sheets) and any("dawa.css" in (h or "") for h in sheets)
    assert page.evaluate("() => getComputedStyle(document.querySelector('td.num')).textAlign") == "end"
    # htmx's indicator style stays off: no inline <style> injected into the page.
    assert page.evaluate("() => document.querySelectorAll('style').length") == 0
    assert page.locator("table#positions td.num").first.inner_text() == "1,234.5"
    path = screenshot("en-home")
    assert path.stat().st_size > 10_000
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
    assert page.dawa_log.errors == []


def test_htmx_requests_carry_the_csrf_token(site, browser_page):
    page = browser_page
    page.goto(f"{site}/?lang=en&role=pharmacist")
    _assets_ready(page)
    # A button wired the way pages wire htmx posts; dawa.js must add the header.
    page.evaluate("""() => {
        const b = document.createElement('button');
        b.id = 'probe'; b.setAttribute('hx-post', '/echo-token'); b.setAttribute('hx-target', '#out');
        const out = document.createElement('output'); out.id = 'out';
        document.querySelector('main').append(b, out);
        window.htmx.process(b);
    }""")
    page.click("#probe")
    page.wait_for_function("() => document.querySelector('#out').textContent.length > 0")
    assert page.inner_text("#out") == CSRF_TOKEN
    assert page.dawa_log.csp_violations == []


def test_arabic_page_is_laid_out_right_to_left(site, browser_page, screenshot):
    page = browser_page
    page.goto(f"{site}/?lang=ar&role=facility_manager")
    _assets_ready(page)
    assert page.evaluate("() => document.documentElement.dir") == "rtl"
    assert page.evaluate("() => document.documentElement.lang") == "ar"
    assert page.evaluate("() => getComputedStyle(document.body).direction") == "rtl"
    width = page.viewport_size["width"]
    brand = page.locator("a.brand").bounding_box()
    first_col = page.locator("table#positions th").first.bounding_box()
    last_col = page.locator("table#positions th").last.bounding_box()
    # The brand sits on the right and the table's first column is its rightmost one.
    assert brand["x"] > width / 2
    assert first_col["x"] > last_col["x"]
    assert page.locator("h2").first.inner_text() == "نظرة سريعة على المخزون"
    screenshot("ar-home")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console


def test_english_page_is_laid_out_left_to_right(site, browser_page):
    page = browser_page
    page.goto(f"{site}/?lang=en&role=facility_manager")
    _assets_ready(page)
    width = page.viewport_size["width"]
    assert page.locator("a.brand").bounding_box()["x"] < width / 2
    first_col = page.locator("table#positions th").first.bounding_box()
    last_col = page.locator("table#positions th").last.bounding_box()
    assert first_col["x"] < last_col["x"]


@pytest.mark.parametrize("lang,button", [("en", "Log in"), ("fr", "Se connecter"), ("ar", "تسجيل الدخول")])
def test_login_page_keeps_typed_username_after_an_error(site, browser_page, screenshot, lang, button):
    page = browser_page
    page.goto(f"{site}/login?lang={lang}&error=Nothing+to+show.&typed=amina")
    _assets_ready(page)
    assert page.input_value("#f-username") == "amina"
    assert page.get_attribute("#f-username", "autocomplete") == "username"
    assert page.locator("form[action='/login'] button[type=submit]").inner_text() == button
    assert page.locator("p.form-error").is_visible()
    screenshot(f"{lang}-login")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console


def test_a_csp_violation_would_be_noticed(site, browser_page):
    """The checks above can fail: an inline script is blocked and reported."""
    page = browser_page
    page.goto(f"{site}/?lang=en")
    _assets_ready(page)
    page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.inlineRan = true';
        document.body.append(s);
    }""")
    page.wait_for_function("() => window.__cspViolations > 0")
    assert page.evaluate("() => window.inlineRan === undefined")
    assert any("script-src" in m for m in page.dawa_log.csp_violations), page.dawa_log.console


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_charts_draw_under_the_csp_and_after_an_htmx_swap(site, browser_page, screenshot, lang):
    page = browser_page
    page.goto(f"{site}/chart?lang={lang}&role=facility_manager")
    page.wait_for_function("() => window.Chart !== undefined && window.Chart.getChart('use-amox') !== undefined")
    drawn = page.evaluate("""() => {
        const c = window.Chart.getChart('use-amox');
        return {type: c.config.type, labels: c.data.labels, data: c.data.datasets[0].data,
                rtl: c.options.plugins.legend.rtl, locale: c.options.locale};
    }""")
    assert drawn == {"type": "line", "labels": ["2026-06", "2026-07", "2026-08", "2026-09"],
                     "data": [310, 295.5, 280, 330], "rtl": lang == "ar", "locale": lang}
    # The canvas was painted, not left blank.
    assert page.evaluate("""() => {
        const c = document.getElementById('use-amox');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < px.length; i += 4) { if (px[i] !== 0) return true; }
        return false;
    }""")
    page.click("#more")
    page.wait_for_function("() => window.Chart.getChart('on-hand') !== undefined")
    assert page.evaluate("() => window.Chart.getChart('on-hand').options.scales.y.stacked") is True
    screenshot(f"{lang}-chart")
    assert page.dawa_log.csp_violations == [], page.dawa_log.console
    assert page.dawa_log.errors == []
