"""Every page each role can reach, read in French and in Arabic, shows no English.

The live app is served over the small sample (imported and scanned, so there are flags, cases and
an audit trail) on SQLite and PostgreSQL. For each role, a user whose language is ``fr`` or ``ar``
walks the app from ``/`` by its links: the nav pages, their sub-pages (a stock card, a case, the
audit trail, admin forms, notifications, requisitions and levels) and the error pages. On every
page the visible text (and the labels a screen reader reads: ``aria-label``, ``title``,
``placeholder``) is collected, less what is data: text inside ``<bdi>``, ``<code>``, ``<time>``
or ``<data>`` (codes, ids, names, dates), numbers and punctuation. What remains must hold no word
of the English interface: a word of the English catalog (every msgid) or of the English values of
the app's enums, that the page's own language does not also use.

The CLI is run the same way with ``--lang fr`` and ``--lang ar``, flag reasons included.
"""

from __future__ import annotations

import re
from collections import defaultdict
from html.parser import HTMLParser
from urllib.parse import urldefrag, urlsplit

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import select, update

from anomaly import scan
from stock.db import session_factory
from stock.importer import import_dataset
from stock.models import Facility, Item, User
from sample_data import SMALL
from typer.testing import CliRunner

from stock.db import make_engine
from tests.web.conftest import PASSWORD, LiveServer, Served, make_settings
from tests.web.test_cli_tables import db as cli_db  # noqa: F401 - a database with flags, users and alerts
from web.cli import common as cli
from web.cli.main import app
from web import words
from web.templating import LANGUAGE_NAMES, LOCALE_DIR

# Stored texts (flag and hit reasons, notification bodies) are rendered from message keys in the
# reader's language: no element is exempt. Name here, as tag.class or tag#id, an element whose text
# is still stored in one language, until it is rendered from a message key.
PENDING_STORED_MESSAGES: set[str] = set()

# An enum's code shown as data (in <bdi>) is a name left untranslated, and fails the test, except
# in a <code> element (the code itself, shown beside its name on purpose) and here: the fields of
# an audit record's detail, shown as they were recorded (keys and values of its JSON).
AS_RECORDED = {"ul.detail"}

ROLES = {
    # username: (role, facility, region)
    "pharm": ("pharmacist", "TRP-H01", None),
    "mgr": ("facility_manager", "TRP-H01", None),
    "mgr_nat": ("facility_manager", None, None),
    "aud": ("auditor", None, None),
    "adm": ("admin", None, None),
}

# Not English words but names every language writes the same way.
SHARED = {"dawa", "dhis2", "csv", "pdf", "gtin", "fhir", "json", "api", "id", "atc", "sms", "e-mail", "email",
          "ok", "url", "utc", "gs1", "qr", "xlsx", "ean", "eop", "ii", "iii", "iv"}
DATA_TAGS = {"bdi", "code", "time", "data", "script", "style", "kbd", "samp", "var"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
TOKEN = re.compile(r"[A-Za-z0-9À-ÖØ-öø-ÿŒœ'’-]+")  # "_" splits: an enum code like no_prescription is two words
CODE = re.compile(r"[A-Z]+(-[A-Z]+)+")  # BEN-WH: a facility's code
SKIP = re.compile(r"/logout|\.csv|\.pdf|\.json|/export|/download|/static/|/api/|[?&]format=")
PER_PATTERN = 2   # pages visited per path shape (ids and codes replaced by *)
MAX_PAGES = 60    # per role and language


def _words(text: str) -> set[str]:
    """The words of ``text``; a token with a digit in it is a code or an id (CAN20G, u-BEN-01)."""
    return {t.lower().strip("'’-") for t in TOKEN.findall(text or "")
            if not any(c.isdigit() for c in t) and not CODE.fullmatch(t) and not t.startswith("--")} - {""}


def _catalog_words() -> tuple[set[str], dict[str, set[str]]]:
    english, own = set(), {}
    for lang in ("fr", "ar"):
        with open(LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
            catalog = read_po(fh, locale=lang)
        own[lang] = set()
        for m in catalog:
            if not m.id:
                continue
            ids = [m.id] if isinstance(m.id, str) else list(m.id)
            strings = [m.string] if isinstance(m.string, str) else list(m.string)
            for text in ids:
                english |= _words(re.sub(r"%\(\w+\)[sd]", " ", text))
            for text in strings:
                own[lang] |= _words(re.sub(r"%\(\w+\)[sd]", " ", text))
    for values in words.ENUM_VALUES.values():
        for value in values:
            english |= _words(value.replace("_", " "))
    english = {w for w in english if len(w) > 1} - SHARED
    return english, own


ENGLISH, OWN = _catalog_words()
ENUM_CODES = {code for enum, codes in words.ENUM_VALUES.items() if enum != words.UNIT for code in codes
              if len(code) > 3 and not code.isupper()}


class Visible(HTMLParser):
    """The text a reader sees, less data, and the links of a page."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its text)
        self.text: list[tuple[str, str]] = []    # (where, text)
        self.data: list[tuple[str, str]] = []    # (where, text) of data elements
        self.records: list[str] = []             # open elements holding a record's fields as stored
        self.links: list[str] = []
        self.feed(html)

    def _where(self) -> str:
        return " > ".join(t for t, _ in self.stack[-3:])

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        selectors = {tag} | {f"{tag}.{c}" for c in classes} | ({f"{tag}#{a['id']}"} if a.get("id") else set())
        hidden = (tag in DATA_TAGS or "data" in classes or "translate" in a and a["translate"] == "no"
                  or bool(selectors & PENDING_STORED_MESSAGES))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if not (hidden or any(h for _, h in self.stack)):
            for name in ("aria-label", "title", "placeholder", "alt"):
                if a.get(name):
                    self.text.append((f"{tag}[{name}]", a[name]))
            if tag == "input" and a.get("type") in ("submit", "button") and a.get("value"):
                self.text.append((f"{tag}[value]", a["value"]))
        if tag not in VOID:
            self.stack.append((tag, hidden))
            if selectors & AS_RECORDED:
                self.records.append(tag)

    @property
    def in_record(self) -> bool:
        return bool(self.records)

    def handle_endtag(self, tag):
        if self.records and self.records[-1] == tag:
            self.records.pop()
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if data.strip() and not any(h for _, h in self.stack):
            self.text.append((self._where(), data))
        elif data.strip() and self.stack and not {t for t, _ in self.stack} & {"script", "style", "code", "kbd", "samp"} \
                and not self.in_record:
            self.data.append((self._where(), data))


class _Data:
    """Names of things (items, facilities, regions, people, each language's own name), taken out of
    a text as whole words before it is checked."""

    def __init__(self):
        self.cache = {}

    def sub(self, repl: str, text: str, names: tuple[str, ...]) -> str:
        if names not in self.cache:
            alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
            self.cache[names] = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")
        return self.cache[names].sub(repl, text)


DATA = _Data()
ISOLATED = re.compile("\u2068[^\u2069]*(\u2069|$)")


def english_in(html: str, lang: str, data: tuple[str, ...] = ()) -> list[tuple[str, str, list[str]]]:
    """English words in the page's visible text; ``data`` are names of things (items,
    facilities, people), longest first, that are shown as they are written."""
    found = []
    page = Visible(html)
    # Data is shown as it is, but an enum's code shown as data is a name left untranslated.
    for where, shown in page.data:
        if shown.strip() in ENUM_CODES:
            found.append((where, shown.strip(), [shown.strip()]))
    for where, shown in page.text:
        text = ISOLATED.sub(" ", shown)  # a value isolated for bidi (FSI…PDI) is data, even cut short by "…"
        text = DATA.sub(" ", text, data) if data else text
        if lang == "ar":
            bad = sorted(w for w in _words(text) if w not in SHARED and len(w) > 1)
        else:
            bad = sorted(w for w in _words(text) if w in ENGLISH and w not in OWN[lang])
        if bad:
            found.append((where, shown.strip()[:120], bad))
    return found


def _shape(path: str) -> str:
    path = urlsplit(path).path
    return re.sub(r"/[^/]*\d[^/]*", "/*", path)


def walk(client, lang: str, data: tuple[str, ...]) -> tuple[dict[str, list], list[str]]:
    """Follow the links from / and the error pages; English found per page, and pages seen."""
    # The landing page, a missing page, a page most roles may not see (403), a missing case.
    todo = ["/", "/no-such-page", "/admin/users", "/flags/F0000000000", "/stock/NO-SUCH"]
    seen, shapes, problems = set(), defaultdict(int), {}
    while todo and len(seen) < MAX_PAGES:
        path = urldefrag(todo.pop(0))[0]
        if not path.startswith("/") or path.startswith("//") or path in seen or SKIP.search(path):
            continue
        shape = _shape(path)
        if shapes[shape] >= PER_PATTERN:
            continue
        shapes[shape] += 1
        seen.add(path)
        r = client.get(path, follow_redirects=True)
        if "text/html" not in r.headers.get("content-type", ""):
            continue
        assert f'<html lang="{lang}"' in r.text, (path, r.status_code)
        found = english_in(r.text, lang, data)
        if found:
            problems[f"{path} ({r.status_code})"] = found
        todo.extend(Visible(r.text).links)
    return problems, sorted(seen)


@pytest.fixture
def served(engine):
    from web.app import create_app
    from web.admin.service import create_user

    Session = session_factory(engine)
    settings = make_settings()
    with Session() as s:
        import_dataset(s, SMALL)
        for name, (role, facility, region) in ROLES.items():
            create_user(s, name, role, PASSWORD, facility=facility, region=region, web=settings.web)
        s.commit()
        scan.run(s)
        s.commit()
    app = Served(create_app(engine, settings))
    live = LiveServer(app.base_url, app, engine, Session)
    try:
        yield live
    finally:
        for c in live.clients:
            c.close()
        app.stop()


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_every_page_of_every_role_is_in_the_readers_language(served, lang):
    with served.Session() as s:
        s.execute(update(User).values(language=lang))
        s.commit()
        data = {n for n in s.scalars(select(Item.name))} | {n for n in s.scalars(select(Facility.name))} \
            | {n for n in s.scalars(select(Facility.region))} | {n for n in s.scalars(select(User.display_name)) if n} \
            | set(s.scalars(select(User.username))) | set(LANGUAGE_NAMES.values())
    data = tuple(sorted(data, key=len, reverse=True))
    report, visited = {}, {}
    for username in ROLES:
        client = served.login(username)
        problems, seen = walk(client, lang, data)
        visited[username] = seen
        for page, found in problems.items():
            for where, text, bad in found:
                report.setdefault(f"<{where}> {text!r}: {bad}", f"{username} {page}")
    # The walk reached the pages it is meant to check.
    everything = {p for seen in visited.values() for p in seen}
    for expected in ("/flags/", "/stock/", "/audit", "/admin/users", "/admin/facilities", "/admin/items",
                     "/notifications", "/requisitions", "/pharmacy/", "/no-such-page", "/reconciliation",
                     "/expiries", "/admin/ledger"):
        assert any(p.startswith(expected) for p in everything), (expected, visited)
    assert sum(len(seen) for seen in visited.values()) > 60, visited
    assert not report, "\n".join(f"{where} {what}" for what, where in sorted(report.items()))


def test_the_checker_finds_english_and_skips_data():
    page = ('<html lang="fr"><body><p>Stock <bdi>Below-1 Pharmacist</bdi> au <code>open</code> <bdi>dismissed</bdi></p>'
            '<ul class="detail"><li><bdi>role</bdi>: <bdi>pharmacist</bdi></li></ul>'
            '<p>Statut : Open</p><button aria-label="Dismiss">x</button><p>Médicaments</p></body></html>')
    found = english_in(page, "fr")
    assert [bad for _, _, bad in found] == [["dismissed"], ["open"], ["dismiss"]]
    assert english_in('<html lang="ar"><p>مفتوح <bdi>TRP-H01</bdi> DHIS2</p><p>piece</p></html>', "ar") \
        == [("html > p", "piece", ["piece"])]


# --- the command line ---------------------------------------------------------------------------

CLI_COMMANDS = [("stock",), ("stock", "--by-lot"), ("flags", "list"), ("flags", "precision"), ("users", "list"),
                ("ledger", "verify"), ("scan",)]


def _cli_data(url: str) -> tuple[str, ...]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            names = set(s.scalars(select(Item.name))) | set(s.scalars(select(Facility.name))) \
                | set(s.scalars(select(Facility.region))) | set(s.scalars(select(User.username))) \
                | {n for n in s.scalars(select(User.display_name)) if n}
    finally:
        engine.dispose()
    return tuple(sorted(names, key=len, reverse=True))


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_cli_prints_its_tables_and_messages_in_the_chosen_language(cli_db, monkeypatch, lang):
    data = _cli_data(cli_db)
    report = []
    for args in CLI_COMMANDS:
        # Flag reasons on lines of their own below each flag (80 columns); other tables wide
        # enough that no name wraps.
        monkeypatch.setattr(cli.console, "width", 80 if args == ("flags", "list") else 250)
        result = CliRunner().invoke(app, ["--lang", lang, *args, "--db", cli_db], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        lines = result.output.splitlines()
        if args == ("flags", "list"):
            # A flag's reason wraps on indented lines below it: read it whole.
            joined: list[str] = []
            for line in lines:
                if line.startswith("  ") and joined and joined[-1].startswith("  "):
                    joined[-1] += " " + line.strip()
                else:
                    joined.append(line)
            lines = joined
        for line in lines:
            text = ISOLATED.sub(" ", line)
            text = DATA.sub(" ", text, data) if data else text
            words_ = _words(text)
            bad = sorted(w for w in words_ if w not in SHARED and len(w) > 1) if lang == "ar" \
                else sorted(w for w in words_ if w in ENGLISH and w not in OWN[lang])
            if bad:
                report.append(f"{' '.join(args)}: {line.strip()!r} {bad}")
    assert not report, "\n".join(report)


def test_the_cli_language_comes_from_dawa_lang_and_an_unknown_one_is_refused(cli_db, monkeypatch):
    monkeypatch.setenv("DAWA_LANG", "fr")
    result = CliRunner().invoke(app, ["stock", "--db", cli_db], catch_exceptions=False)
    assert result.exit_code == 0 and "Stock disponible" in result.output and "en stock" in result.output
    english = CliRunner().invoke(app, ["--lang", "en", "stock", "--db", cli_db], catch_exceptions=False)
    assert "Stock on hand" in english.output and "on hand" in english.output
    refused = CliRunner().invoke(app, ["--lang", "de", "stock", "--db", cli_db])
    assert refused.exit_code != 0 and "en, fr, ar" in refused.output
