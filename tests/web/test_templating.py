"""The UI layer: templates in English, French and Arabic, locale formatting, catalogs, assets.

Pages are rendered through a tiny FastAPI app (tests/browser/pages.py) with a real HTTP client,
so what is checked is the HTML a browser would receive.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal as babel_format_decimal
from fastapi.testclient import TestClient
from starlette.requests import Request

from tests.browser.pages import CSRF_TOKEN, make_app
from web import templating
from web.templating import LOCALE_DIR, STATIC_DIR, TEMPLATES_DIR, negotiate_language, templates

ROOT = Path(__file__).resolve().parents[2]
LANGS = ("en", "fr", "ar")
TRANSLATED = ("fr", "ar")
NNBSP = "\u202f"


@pytest.fixture(scope="module")
def client():
    with TestClient(make_app()) as c:
        yield c


def _squash(text: str) -> str:
    """Collapse runs of ordinary white space, keeping the (narrow) no-break spaces locales use."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


class Page(HTMLParser):
    """Collects what the tests look at: the root element, tags with their attributes, text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.inline_script = False
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_script = True
        self.text.append(data)

    def first(self, tag: str, **match) -> dict | None:
        for t, attrs in self.tags:
            if t == tag and all(attrs.get(k) == v for k, v in match.items()):
                return attrs
        return None

    def all(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def nodes(self) -> set[str]:
        return {_squash(t) for t in self.text if t.strip()}

    @property
    def plain(self) -> str:
        return _squash(" ".join(self.text))


def get(client, path: str, **params) -> tuple[int, Page, str]:
    r = client.get(path, params=params)
    return r.status_code, Page(r.text), r.text


PAGES = [("/", {"role": "pharmacist"}), ("/login", {}), ("/error/404", {"role": "auditor"})]


# --- every template in every language ---------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("path,params", PAGES)
def test_page_renders_in_each_language_with_its_direction(client, path, params, lang):
    status, page, html = get(client, path, lang=lang, **params)
    assert status == (404 if path.startswith("/error") else 200)
    root = page.first("html")
    assert root == {"lang": lang, "dir": "rtl" if lang == "ar" else "ltr"}
    assert page.first("meta", name="csrf-token") == {"name": "csrf-token", "content": CSRF_TOKEN}
    # The language switcher posts the chosen language with the CSRF token.
    switch = page.first("form", action="/language")
    assert switch == {"class": "inline-form", "method": "post", "action": "/language"}
    assert page.first("select", name="lang") is not None
    assert page.first("option", value=lang, selected=None) is not None


@pytest.mark.parametrize("path,params", PAGES)
def test_translated_pages_show_no_english_interface_text(client, path, params):
    """Each language shows its own words: the English labels do not leak into fr or ar pages."""
    _, en, _ = get(client, path, lang="en", **params)
    for lang in TRANSLATED:
        _, page, _ = get(client, path, lang=lang, **params)
        for english in ("Log in", "Log out", "Skip to content", "Change", "Stock at a glance",
                        "Back to the home page", "Dispense", "Password"):
            if english in en.nodes:
                assert english not in page.nodes, (lang, path, english)


@pytest.mark.parametrize("lang,title,button", [
    ("en", "Log in", "Log in"),
    ("fr", "Se connecter", "Se connecter"),
    ("ar", "تسجيل الدخول", "تسجيل الدخول"),
])
def test_login_form_keeps_username_shows_error_and_posts_token(client, lang, title, button):
    status, page, html = get(client, "/login", lang=lang, error="Nothing to show.", typed='amina"><b>')
    assert status == 200
    assert f"<h1>{title}</h1>" in html
    form = page.first("form", action="/login")
    assert form == {"method": "post", "action": "/login"}
    assert page.first("input", name="csrf_token", type="hidden", value=CSRF_TOKEN) is not None
    username = page.first("input", name="username")
    assert username["value"] == 'amina"><b>'  # kept, and escaped (the parser saw one attribute)
    assert "<b>" not in html.split('name="username"')[1].split(">")[0]
    password = page.first("input", name="password")
    assert password["type"] == "password" and "value" not in password
    # A known message handed in by the app is shown in the page's language.
    expected = {"en": "Nothing to show.", "fr": "Rien à afficher.", "ar": "لا شيء لعرضه."}[lang]
    assert page.first("p", **{"class": "form-error", "role": "alert"}) is not None
    assert expected in page.plain
    # No user yet: no navigation by role and no logout.
    assert page.first("form", action="/logout") is None


def test_login_without_error_has_no_alert(client):
    _, page, _ = get(client, "/login")
    assert page.first("p", **{"class": "form-error", "role": "alert"}) is None


@pytest.mark.parametrize("lang,heading,code", [
    ("en", "Not found", "Error 404"), ("fr", "Introuvable", "Erreur 404"), ("ar", "غير موجود", "خطأ 404"),
])
def test_error_page_names_status_and_message(client, lang, heading, code):
    status, page, html = get(client, "/error/404", lang=lang, role="auditor", message="No such flag F-9")
    assert status == 404
    assert heading in page.plain and code in page.plain and "No such flag F-9" in page.plain


def test_error_message_with_percent_signs_and_markup_is_shown_as_given(client):
    status, page, html = get(client, "/error/422", lang="fr", message="quantity: 50% %d <b>x</b>")
    assert status == 422 and "quantity: 50% %d <b>x</b>" in page.plain and "<b>x</b>" not in html


@pytest.mark.parametrize("status,heading", [(403, "Not allowed"), (429, "Too many attempts"),
                                            (500, "Something went wrong"), (400, "This request could not be completed")])
def test_error_page_heading_follows_status(client, status, heading):
    code, page, _ = get(client, f"/error/{status}")
    assert code == status and heading in page.plain


NAV = {
    "pharmacist": ["Pharmacy", "Requisitions"],
    "facility_manager": ["Stock", "Expiries"],
    "auditor": ["Flags"],
    "admin": ["Users", "Facilities", "Items", "Ledger"],
}
SHARED = {"Pharmacy", "Requisitions"}  # in the nav of every role that works the pharmacy pages
AUDIT_TRAIL_READERS = {"auditor", "admin"}


def _nav_labels(html: str) -> list[str]:
    block = re.search(r'<ul class="nav-links">(.*?)</ul>', html, re.S)
    return [" ".join(t.split()) for t in re.findall(r"<a [^>]*>([^<]*)</a>", block.group(1))] if block else []


@pytest.mark.parametrize("role", sorted(NAV))
def test_navigation_follows_role(client, role):
    _, page, html = get(client, "/", role=role, empty="1")
    labels = _nav_labels(html)
    assert labels[:len(NAV[role])] == NAV[role]
    for other, others in NAV.items():
        if other != role:
            assert not (set(others) - SHARED) & set(labels), (role, other, labels)
    # One pharmacy nav: its pages are named once, in the pharmacy pages' own nav, never in the main one.
    assert not {"Dispense", "Receipt", "Receipts", "Transfers", "Today", "Today's entries"} & set(labels)
    assert ("Audit trail" in labels) == (role in AUDIT_TRAIL_READERS), (role, labels)
    logout = page.first("form", action="/logout")
    assert logout == {"class": "inline-form", "method": "post", "action": "/logout"}
    assert "Amina Ben Ali" in page.plain


def test_no_navigation_before_login(client):
    _, page, html = get(client, "/login")
    assert _nav_labels(html) == []


def test_home_table_formats_numbers_per_locale(client):
    _, en, _ = get(client, "/", lang="en", role="facility_manager")
    _, fr, _ = get(client, "/", lang="fr", role="facility_manager")
    _, ar, _ = get(client, "/", lang="ar", role="facility_manager")
    assert "1,234.5" in en.plain
    assert f"1{NNBSP}234,5" in fr.plain
    assert babel_format_decimal(Decimal("1234.5"), locale="ar") in ar.plain
    # Months of stock to one decimal, per locale; an item with no consumption shows a dash.
    assert "4.1" in en.plain and "4,1" in fr.plain
    assert "Tripoli Central Hospital" in en.plain and "Out of stock" in en.plain
    assert "Rupture de stock" in fr.plain and "نفد المخزون" in ar.plain
    assert "Under one month" in en.plain  # 0.8 months of stock
    assert "2 facilities in your scope:" in en.plain
    assert f"2 établissements dans votre périmètre\u00a0:" in fr.plain
    assert "منشأتان في نطاقك:" in ar.plain  # Arabic dual form


def test_home_with_nothing_in_scope_says_so(client):
    _, page, _ = get(client, "/", role="auditor", empty="1")
    assert "No stock to show in your scope." in page.plain
    assert page.first("table") is None


# --- locale formatting filters ---------------------------------------------------------------

def _fmt(source: str, lang: str, **values) -> str:
    return templates.env.from_string(source).render(lang=lang, **values)


@pytest.mark.parametrize("lang,expected", [("en", "1,234.5"), ("fr", f"1{NNBSP}234,5"),
                                           ("ar", babel_format_decimal(1234.5, locale="ar"))])
def test_format_number(lang, expected):
    assert _fmt("{{ v|format_number }}", lang, v=Decimal("1234.5")) == expected


def test_format_decimal_fixes_digits():
    assert _fmt("{{ v|format_decimal(2) }}", "en", v=Decimal("1234.5")) == "1,234.50"
    assert _fmt("{{ v|format_decimal(2) }}", "fr", v=1234.5) == f"1{NNBSP}234,50"
    assert _fmt("{{ v|format_decimal(0) }}", "en", v=Decimal("7.5")) == "8"
    assert _fmt("{{ v|format_decimal }}", "en", v=None) == ""


def test_format_date_per_locale():
    d = date(2026, 3, 5)
    assert _fmt("{{ d|format_date }}", "en", d=d) == "Mar 5, 2026"
    assert _fmt("{{ d|format_date }}", "fr", d=d) == "5 mars 2026"
    ar = _fmt("{{ d|format_date }}", "ar", d=d)
    assert "2026" in ar and "03" in ar and ar != _fmt("{{ d|format_date }}", "en", d=d)
    assert _fmt("{{ d|format_date('long') }}", "fr", d=d) == "5 mars 2026"
    assert "مارس" in _fmt("{{ d|format_date('long') }}", "ar", d=d)


def test_format_datetime_shows_utc_time_in_the_zone():
    """Stored in UTC, shown in the facility's zone: 22:30 UTC is 00:30 the next day in Tripoli."""
    t = datetime(2026, 3, 5, 22, 30, tzinfo=timezone.utc)
    en = _fmt("{{ t|format_datetime(tz='Africa/Tripoli') }}", "en", t=t)
    assert en.startswith("Mar 6, 2026") and "12:30:00" in en
    fr = _fmt("{{ t|format_datetime(tz='Africa/Tripoli') }}", "fr", t=t)
    assert fr.startswith("6 mars 2026") and "00:30:00" in fr
    assert "22:30" in _fmt("{{ t|format_datetime(tz='UTC', format='short') }}", "fr", t=t)
    # With no zone named, the default zone from settings applies (Africa/Tripoli unless set).
    assert _fmt("{{ t|format_date }}", "en", t=t) == "Mar 6, 2026"


# --- form macros ----------------------------------------------------------------------------

FORMS = '{% import "_forms.html" as forms with context %}'


def test_field_shows_error_next_to_field_and_keeps_value():
    html = _fmt(FORMS + '{{ forms.field("quantity", "Quantity", value=v, error="Only 20 on hand",'
                ' type="number", min=1, attrs={"data-item": "AMOX"}) }}', "en", v='30"><script>')
    page = Page(html)
    field = page.first("input", name="quantity")
    assert field["value"] == '30"><script>' and "<script>" not in html
    assert field["aria-invalid"] == "true" and field["aria-describedby"] == "f-quantity-error"
    assert field["type"] == "number" and field["min"] == "1" and field["data-item"] == "AMOX"
    assert page.first("small", id="f-quantity-error")["class"] == "field-error"
    assert "Only 20 on hand" in page.plain
    assert page.first("label", **{"for": "f-quantity"}) is not None
    # The error follows its input directly, so it reads next to the field in either direction.
    assert html.index('name="quantity"') < html.index("Only 20 on hand")


def test_field_without_error_and_select_keep_choice():
    html = _fmt(FORMS + '{{ forms.field("note", "Note", value="x", type="textarea") }}'
                '{{ forms.select("reason", "Reason", [("expired", "Expired"), ("damaged", "Damaged")],'
                ' value="damaged", blank="—") }}{{ forms.csrf_input() }}', "en", csrf_token="tok")
    page = Page(html)
    assert page.first("textarea", name="note") is not None and "aria-invalid" not in html
    assert page.first("option", value="damaged", selected=None) is not None
    assert page.first("option", value="expired") == {"value": "expired"}
    assert page.first("input", name="csrf_token") == {"type": "hidden", "name": "csrf_token", "value": "tok"}


def test_table_macro_formats_columns_and_says_when_empty():
    cols = [{"label": "Item", "key": "item_code"}, {"label": "On hand", "key": "on_hand", "format": "number"},
            {"label": "Expires", "key": "expiry", "format": "date"}]
    rows = [SimpleNamespace(item_code="AMOX", on_hand=Decimal("1500"), expiry=date(2027, 1, 31)),
            {"item_code": "PARA", "on_hand": 3, "expiry": None}]
    html = _fmt(FORMS + "{{ forms.table(cols, rows) }}", "fr", cols=cols, rows=rows)
    page = Page(html)
    assert f"1{NNBSP}500" in page.plain and "31 janv. 2027" in page.plain and "PARA" in page.plain
    assert [th.get("class") for th in page.all("th")] == [None, "num", None]
    empty = _fmt(FORMS + "{{ forms.table(cols, []) }}", "ar", cols=cols)
    assert "لا شيء لعرضه." in empty and "<table" not in empty


# --- language negotiation --------------------------------------------------------------------

def _request(accept: str | None) -> Request:
    headers = [(b"accept-language", accept.encode())] if accept is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})


@pytest.mark.parametrize("user_lang,accept,expected", [
    ("ar", "fr-FR,fr;q=0.9", "ar"),                # the user's choice wins
    (None, "fr-FR,fr;q=0.9,en;q=0.8", "fr"),
    (None, "de-DE,de;q=0.9,ar;q=0.5", "ar"),       # first supported language by preference
    (None, "en;q=0.2, fr;q=0.7", "fr"),            # order by q, not by position
    (None, "fr;q=0, en", "en"),                    # q=0 means "not this one"
    (None, "de", "en"),
    (None, None, "en"),
    ("xx", "ar-LY", "ar"),                         # an unknown stored choice falls through
])
def test_negotiate_language(user_lang, accept, expected):
    user = SimpleNamespace(language=user_lang)
    assert negotiate_language(_request(accept), user) == expected


def test_negotiate_language_for_anonymous_and_user_without_language():
    assert negotiate_language(_request("ar"), None) == "ar"
    assert negotiate_language(_request("fr"), SimpleNamespace(username="x")) == "fr"


def test_render_defaults_to_english_without_state(client):
    app_request = _request(None)
    app_request.state.lang = "zz"
    html = templating.render(app_request, "login.html").body.decode()
    assert '<html lang="en" dir="ltr">' in html and 'name="csrf-token"' not in html


# --- content security: nothing inline, nothing from another host -----------------------------

@pytest.mark.parametrize("path,params", PAGES)
def test_pages_have_no_inline_script_or_style_and_no_other_host(client, path, params):
    _, page, html = get(client, path, lang="ar", **params)
    assert not page.inline_script
    assert page.all("style") == []
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("src", "href", "action"):
            if name in attrs:
                assert attrs[name].startswith(("/", "#")), (tag, attrs)
    for script in page.all("script"):
        r = client.get(script["src"])
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    for link in page.all("link"):
        r = client.get(link["href"])
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")


def test_templates_and_static_files_name_no_other_host():
    pattern = re.compile(r"(?:src|href|action)\s*=\s*[\"']?(?:https?:)?//", re.I)
    for path in list(TEMPLATES_DIR.rglob("*.html")) + [STATIC_DIR / "dawa.css", STATIC_DIR / "dawa.js"]:
        assert not pattern.search(path.read_text(encoding="utf-8")), path


def test_vendored_files_match_vendor_md():
    table = (STATIC_DIR / "vendor" / "VENDOR.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+) \| ([\d.]+) \| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", table, re.M)
    assert {r[0] for r in rows} == {"htmx.org", "chart.js", "@picocss/pico"}
    for package, version, file, digest in rows:
        path = STATIC_DIR / "vendor" / file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, (package, file)
        assert any(p.name.startswith("LICENSE") for p in path.parent.iterdir()), package
    refresh = (STATIC_DIR / "vendor" / "refresh.sh").read_text(encoding="utf-8")
    pinned = dict(re.findall(r"^(HTMX|CHARTJS|PICO)=(\S+)$", refresh, re.M))
    assert {"htmx.org": pinned["HTMX"], "chart.js": pinned["CHARTJS"], "@picocss/pico": pinned["PICO"]} == {
        package: version for package, version, _file, _digest in rows}


# --- catalogs ---------------------------------------------------------------------------------

def _marked_messages() -> set:
    with open(ROOT / "babel.cfg", encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
            ROOT, method_map, options_map):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def test_python_messages_are_extracted():
    import io

    source = io.BytesIO(b'''
WRONG = "Wrong username or password."
NOT_A_MESSAGE = 3
MSG_REQUIRED = "This is required."
NAME = "not a message: neither MSG_ nor passed to gettext"
def f(lang, n, name):
    gettext(lang, WRONG)
    gettext(lang, "Literal %(x)s", x=1)
    gettext(lang, f"no {name}")
    translations(lang).gettext("one argument: not this form")
    ngettext(lang, "%(num)d row", "%(num)d rows", n)
''')
    found = [m[2] for m in templating.extract_server_messages(source, [], [], {})]
    assert found == ["This is required.", "Wrong username or password.", "Literal %(x)s",
                     ("%(num)d row", "%(num)d rows")]


def test_gettext_outside_templates():
    assert templating.gettext("fr", "Wrong username or password.") == "Nom d’utilisateur ou mot de passe incorrect."
    assert templating.gettext("en", "Wrong username or password.") == "Wrong username or password."
    assert "5" in templating.gettext("ar", "Too many failed logins. Try again in %(minutes)s minutes.", minutes=5)
    assert templating.ngettext("ar", "%(num)d facility in your scope:", "%(num)d facilities in your scope:", 2) \
        == "منشأتان في نطاقك:"
    assert templating.ngettext("fr", "%(num)d facility in your scope:", "%(num)d facilities in your scope:", 3) \
        == "3 établissements dans votre périmètre\u00a0:"


def _ids(catalog) -> set:
    return {m.id if isinstance(m.id, str) else tuple(m.id) for m in catalog if m.id}


def _po(lang: str):
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=lang)


def test_pot_holds_every_template_string():
    found = _marked_messages()
    assert len(found) > 30
    with open(LOCALE_DIR / "messages.pot", "rb") as fh:
        pot = read_po(fh)
    missing = found - _ids(pot)
    assert not missing, f"run pybabel extract (web/locale/README.md); not in messages.pot: {missing}"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_template_string_is_translated(lang):
    catalog = _po(lang)
    by_id = {(m.id if isinstance(m.id, str) else tuple(m.id)): m for m in catalog if m.id}
    problems = []
    for msgid in sorted(_marked_messages(), key=str):
        message = by_id.get(msgid)
        if message is None:
            problems.append(f"missing: {msgid!r}")
        elif message.fuzzy:
            problems.append(f"fuzzy: {msgid!r}")
        elif not (message.string if isinstance(message.string, str) else all(message.string)):
            problems.append(f"untranslated: {msgid!r}")
    errors = [f"{m.id!r}: {err}" for m, errs in catalog.check() for err in errs]
    assert not problems and not errors, problems + errors


@pytest.mark.parametrize("lang", TRANSLATED)
def test_compiled_catalog_matches_its_source(lang):
    """The .mo the app reads holds exactly the .po's translations (run pybabel compile)."""
    po = _po(lang)
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "messages.mo", "rb") as fh:
        mo = read_mo(fh)

    def table(catalog):
        out = {}
        for m in catalog:
            if not m.id or m.fuzzy:
                continue
            out[m.id if isinstance(m.id, str) else tuple(m.id)] = (
                m.string if isinstance(m.string, str) else tuple(m.string))
        return out

    assert table(mo) == table(po)
    assert mo.plural_forms == po.plural_forms


# --- packaging ------------------------------------------------------------------------------

@pytest.mark.slow
def test_build_ships_templates_static_and_catalogs(tmp_path):
    """A built distribution carries what pages need at run time (not only an editable install)."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "__pycache__",
                                    "demo", "*.sqlite", ".pytest_cache", "tests", "bench")
    shutil.copytree(ROOT, src, ignore=ignore)
    out = tmp_path / "build"
    # build_py is the step that decides which package files a wheel or an install carries.
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                    "--build-lib", str(out)], cwd=src, check=True, capture_output=True)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for needed in ("web/templating.py", "web/templates/base.html", "web/templates/_forms.html",
                   "web/static/dawa.css", "web/static/dawa.js", "web/static/vendor/htmx/htmx.min.js",
                   "web/static/vendor/chart.js/chart.umd.min.js", "web/static/vendor/pico/pico.min.css",
                   "web/static/vendor/htmx/LICENSE", "web/locale/messages.pot",
                   "web/locale/fr/LC_MESSAGES/messages.mo", "web/locale/ar/LC_MESSAGES/messages.mo"):
        assert needed in names, needed


# --- charts -----------------------------------------------------------------------------------

def test_chart_macro_writes_its_data_as_json_in_an_attribute():
    import json

    html = _fmt('{% import "_charts.html" as charts with context %}{{ charts.script() }}'
                '{{ charts.chart("c1", "line", labels, sets, title=title) }}', "fr",
                title="Use 'AMOX' <500>", labels=[date(2026, 6, 1), "juil."],
                sets=[{"label": "A'B", "data": [Decimal("310.5"), None]}])
    page = Page(html)
    assert page.first("script")["src"].startswith("/static/vendor/chart.js/chart.umd.min.js?v=")
    canvas = page.first("canvas", id="c1")
    assert canvas["class"] == "dawa-chart" and canvas["aria-label"] == "Use 'AMOX' <500>"
    assert json.loads(canvas["data-chart"]) == {
        "type": "line", "labels": ["2026-06-01", "juil."], "stacked": False,
        "datasets": [{"label": "A'B", "data": [310.5, None]}]}
    assert "<500>" not in html  # escaped in the caption and the label


def test_static_url_carries_a_content_hash():
    first = templating._static_url("dawa.js")
    digest = hashlib.sha256((STATIC_DIR / "dawa.js").read_bytes()).hexdigest()[:12]
    assert first == f"/static/dawa.js?v={digest}"
