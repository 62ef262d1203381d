"""Rendering pages: Jinja2 templates in the reader's language, with locale-aware dates and numbers.

A page is rendered for one request. Who is reading (``request.state.user``), the CSRF token for its
forms (``request.state.csrf_token``) and the language (``request.state.lang``) come from the
request, so route handlers only pass what the page is about. Templates never decide who may see
what: access is settled before a handler runs.

Translations come from the Babel catalogs in ``web/locale`` (see its README). ``{% trans %}``
blocks and ``_()`` look up the language of the page being rendered, so one template environment
serves every language at once.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.requests import Request

from stock.settings import Settings
from web.catalogs import (
    DEFAULT_LANGUAGE,
    LANGUAGE_NAMES,
    LANGUAGES,
    LOCALE_DIR,
    RTL_LANGUAGES,
    _current_lang,
    _lang_of,
    translations,
)
from web import words

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


# The zone times are shown in where a template names none (the app's default_timezone, set by render).
_current_zone: ContextVar[str] = ContextVar("dawa_zone", default=Settings.model_fields["default_timezone"].default)


def gettext(lang: str, message: str, **variables: Any) -> str:
    """Translate ``message`` for ``lang`` outside a template (a flash or error message)."""
    text = translations(lang).gettext(message)
    return text % variables if variables else text


def ngettext(lang: str, singular: str, plural: str, n: int, **variables: Any) -> str:
    text = translations(lang).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


# New-style gettext (as jinja2.ext.i18n's newstyle=True): autoescape-aware and formatting with
# keyword variables, so `{{ _("Hello %(name)s", name=user.display_name) }}` escapes the name.
def _make_gettext(fixed_lang: str | None):
    from jinja2 import pass_context

    @pass_context
    def _gettext(__context, __string: str, **variables: Any) -> str:
        rv = translations(fixed_lang or _lang_of(__context)).gettext(__string)
        if __context.eval_ctx.autoescape:
            rv = Markup(rv)
        return rv % variables  # always, as jinja2's newstyle gettext: "%%" in a msgid means "%"

    return _gettext


def _make_ngettext(fixed_lang: str | None):
    from jinja2 import pass_context

    @pass_context
    def _ngettext(__context, __singular: str, __plural: str, __num: int, **variables: Any) -> str:
        variables.setdefault("num", __num)
        rv = translations(fixed_lang or _lang_of(__context)).ngettext(__singular, __plural, __num)
        if __context.eval_ctx.autoescape:
            rv = Markup(rv)
        return rv % variables

    return _ngettext


# --- locale-aware formatting (Babel) -----------------------------------------------------------

def _display_zone(tz: str | None) -> ZoneInfo:
    return ZoneInfo(tz or _current_zone.get())


_format_number = words.format_number


def _format_decimal(lang: str, value: Any, digits: int | None = None) -> str:
    """``digits`` fixes the number of decimals shown (rounded half-even, as Babel does)."""
    if value is None or value == "":
        return ""
    if digits is None:
        return babel_numbers.format_decimal(value, locale=lang)
    pattern = "#,##0." + "0" * digits if digits > 0 else "#,##0"
    return words.signed(lang, babel_numbers.format_decimal(Decimal(str(value)), format=pattern, locale=lang))


def _format_date(lang: str, value: date | datetime | None, format: str = "medium",
                 tz: str | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(_display_zone(tz)).date()
    return babel_dates.format_date(value, format=words.SHORT_DATE if format == "short" else format, locale=lang)


def _format_datetime(lang: str, value: datetime | None, format: str = "medium",
                     tz: str | None = None) -> str:
    """Times are stored in UTC and shown in ``tz`` (a facility's zone), else the default zone."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return babel_dates.format_datetime(value, format=words.SHORT_DATETIME if format == "short" else format,
                                       tzinfo=_display_zone(tz), locale=lang)


def _filter(fn):
    from jinja2 import pass_context

    @pass_context
    def wrapped(context, value, *args, **kwargs):
        return fn(_lang_of(context), value, *args, **kwargs)

    wrapped.__name__ = fn.__name__.lstrip("_")
    return wrapped


def _translated(lang: str, message: Any) -> str:
    """A message handed in by the app (not written in the template): its translation if the
    catalog has one, else itself, never %-formatted (it may hold a user's input)."""
    if message is None:
        return ""
    return translations(lang).gettext(str(message))


translated = _filter(_translated)
format_number = _filter(_format_number)
format_decimal = _filter(_format_decimal)
format_date = _filter(_format_date)
format_datetime = _filter(_format_datetime)


@lru_cache(maxsize=None)
def _static_version(path: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


def _static_url(path: str) -> str:
    """URL of a file under web/static, with a content hash so browsers may cache it for long."""
    return f"/static/{path}?v={_static_version(path)}"


def _json_default(value: Any) -> Any:
    """For ``|tojson``: Decimals (quantities) as numbers, dates and times as ISO strings."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _may_see_dhis2_pushes(user) -> bool:
    """Whether the navigation links the DHIS2 push history (decided in web.access)."""
    from web.access import may_see_dhis2_pushes

    return may_see_dhis2_pushes(user)


def _index_by(rows, attribute: str = "code") -> dict:
    """``{row.code: row}`` for looking rows up by key in a template (dicts or objects)."""
    out = {}
    for row in rows or ():
        key = row.get(attribute) if isinstance(row, dict) else getattr(row, attribute)
        out[key] = row
    return out


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True),
    extensions=["jinja2.ext.i18n"],
    auto_reload=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)
_env.install_gettext_callables(  # type: ignore[attr-defined]
    _make_gettext(None), _make_ngettext(None), newstyle=True
)
_env.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}
_env.filters.update(
    translated=translated,
    format_number=format_number,
    format_decimal=format_decimal,
    format_date=format_date,
    format_datetime=format_datetime,
)
_env.filters.update(bdi=words.bdi, isolate=words.isolate)
_env.globals.update(
    label=_filter(words.label), quantity=_filter(words.quantity), plural_n=words.plural_count,
    may_see_dhis2_pushes=_may_see_dhis2_pushes,
    static_url=_static_url,
    index_by=_index_by,
    LANGUAGES=LANGUAGES,
    LANGUAGE_NAMES=LANGUAGE_NAMES,
)


# --- message extraction -----------------------------------------------------------------------

def extract_server_messages(fileobj, keywords, comment_tags, options):
    """pybabel extraction method for Python modules (named in babel.cfg).

    Python code translates a message for a page with ``gettext(lang, MESSAGE)`` or
    ``ngettext(lang, SINGULAR, PLURAL, n)``, the language first, which pybabel's own Python
    extractor would misread. This finds those calls whose message is a string literal or a
    module-level string constant (``WRONG_LOGIN = "Wrong username or password."``), and every
    module-level string constant named ``MSG_...``, which is how a module declares a message it
    hands to ``gettext`` through a helper of its own. Also the refusals of web.access raised with
    a literal message, and the markers of web.words (``N_``, ``NP_``, ``NN_``).
    """
    import ast

    tree = ast.parse(fileobj.read())
    constants: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) \
                and isinstance(stmt.value.value, str):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = stmt.value.value
                    if target.id.startswith("MSG_"):
                        yield stmt.lineno, "gettext", stmt.value.value, []

    def text(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        args = [text(a) for a in node.args]
        if name == "N_" and len(args) == 1 and args[0] is not None:
            yield node.lineno, "gettext", args[0], []
        elif name in ("NP_", "pgettext") and len(args) in (2, 3) and None not in args[-2:]:
            yield node.lineno, "pgettext", tuple(args[-2:]), []
        elif name == "NN_" and len(args) == 2 and None not in args:
            yield node.lineno, "ngettext", tuple(args), []
        elif name in ("Forbidden", "NotFound", "NotAuthenticated") and args and args[0] is not None:
            yield node.lineno, "gettext", args[0], []
        elif name == "gettext" and len(node.args) >= 2 and text(node.args[1]) is not None:
            yield node.lineno, "gettext", text(node.args[1]), []
        elif name == "ngettext" and len(node.args) >= 4:
            singular, plural = text(node.args[1]), text(node.args[2])
            if singular is not None and plural is not None:
                yield node.lineno, "ngettext", (singular, plural), []


# --- language negotiation ---------------------------------------------------------------------

def _accept_language(header: str | None) -> list[str]:
    """Languages from an Accept-Language header, most preferred first (q=0 means not wanted)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, val = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, position, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate_language(request: Request, user: Any = None) -> str:
    """The user's chosen language, else the best of the browser's among en/fr/ar, else English."""
    chosen = getattr(user, "language", None) if user is not None else None
    if chosen in LANGUAGES:
        return chosen
    for tag in _accept_language(request.headers.get("accept-language")):
        primary = tag.split("-")[0].split("_")[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def text_direction(lang: str) -> str:
    return "rtl" if lang in RTL_LANGUAGES else "ltr"


# --- rendering --------------------------------------------------------------------------------

def wants_fragment(request: Request) -> bool:
    """An htmx request for part of a page (not htmx restoring a whole page from its history)."""
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-history-restore-request")


def _unread(request: Request, user) -> int:
    """How many in-app notifications the reader has not acknowledged, for the nav's badge."""
    if user is None or getattr(user, "id", None) is None or "app" not in request.scope:
        return 0
    sessions = getattr(request.app.state, "read_sessions", None)
    if sessions is None:
        return 0
    from sqlalchemy import func, select

    from web.alerts.models import Notification

    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Notification)
                        .where(Notification.user_id == user.id, Notification.acknowledged_at.is_(None))) or 0


def render(request: Request, name: str, context: dict | None = None,
           status_code: int = 200) -> HTMLResponse:
    """Render template ``name`` for this request, in its language, with the user and CSRF token."""
    state = request.state
    lang = getattr(state, "lang", None)
    if lang not in LANGUAGES:
        lang = DEFAULT_LANGUAGE
    page: dict[str, Any] = {
        "user": getattr(state, "user", None),
        "csrf_token": getattr(state, "csrf_token", None),
        "lang": lang,
        "dir": text_direction(lang),
        "_": _make_gettext(lang),
        "gettext": _make_gettext(lang),
        "ngettext": _make_ngettext(lang),
    }
    page["unread_notifications"] = _unread(request, page["user"])
    page.update(context or {})
    token = _current_lang.set(lang)
    settings = getattr(request.app.state, "settings", None) if "app" in request.scope else None
    zone = _current_zone.set(settings.default_timezone if settings is not None else _current_zone.get())
    try:
        # Starlette renders the template here, inside the language and zone set above.
        return templates.TemplateResponse(request, name, page, status_code=status_code)
    finally:
        _current_zone.reset(zone)
        _current_lang.reset(token)


from web.messages import install as _install_message_filters  # noqa: E402

_install_message_filters(_env)

__all__ = ["templates", "render", "wants_fragment", "negotiate_language", "text_direction", "translations", "gettext",
           "ngettext", "LANGUAGES", "LANGUAGE_NAMES", "RTL_LANGUAGES", "TEMPLATES_DIR", "STATIC_DIR",
           "LOCALE_DIR"]
