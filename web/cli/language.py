"""The language the `dawa` commands print in: ``--lang`` (or ``DAWA_LANG``), English by default.

Commands print through the same catalogs as the pages (web/locale): table titles and column
headers, enum values (statuses, severities, roles, movements, detectors, units) and the summary
lines of the main commands. What a command prints about data (codes, ids, names, numbers) is
printed as it is; in a right-to-left language, values inside a sentence are isolated for bidi
(Unicode FSI/PDI), so a facility code or a negative number keeps its order.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Optional

from web import words
from web.catalogs import DEFAULT_LANGUAGE, LANGUAGES, RTL_LANGUAGES, translations
from web.words import N_

_lang: ContextVar[str] = ContextVar("dawa_cli_lang", default=DEFAULT_LANGUAGE)

# Column headers of the command tables (web.cli.tables translates them).
HEADERS = (N_("facility"), N_("item"), N_("name"), N_("lot"), N_("expiry"), N_("on hand"), N_("unit"),
           N_("entries"), N_("sha256"), N_("facility / sha256"), N_("flag"), N_("score"), N_("sev"),
           N_("status"), N_("reason"), N_("detector"), N_("confirmed"), N_("dismissed"),
           N_("precision (smoothed)"), N_("avg monthly use"), N_("months of stock"), N_("username"),
           N_("role"), N_("scope"), N_("active"), N_("language"), N_("Lowest months of stock"))

MSG_UNKNOWN_LANG = "unknown language %(lang)s; choose one of %(choices)s"
MSG_ERROR = "error:"
MSG_STOCK_TITLE = "Stock on hand"
MSG_MORE_ROWS = "... %(num)s more rows (use --limit or filters)"
MSG_FLAGS_SHOWN = "Flags (%(num)s shown)"
MSG_TOP_FLAGS = "Most suspicious flags"
MSG_PRECISION_TITLE = "Detector precision from verdicts"
MSG_NO_VERDICTS = "no verdicts yet counts as %(confirmed)s confirmed of %(total)s"
MSG_CHAINS_OK = "%(entries)s entries in %(facilities)s facility chains verified"
MSG_CHAINS_OK_AGAINST = "%(entries)s entries in %(facilities)s facility chains verified against %(against)s"
MSG_SCAN_NOTHING = "nothing new in the ledger since scan %(scan)s; %(flags)s flags (use --force to scan anyway)"
MSG_SCAN_DONE = ("scan %(scan)s: %(entries)s entries read, %(new)s new flags, %(updated)s updated, "
                 "%(suppressed)s kept dismissed; %(flags)s flags in all")
MSG_CHAIN_HEADS = "Chain heads"
MSG_STOCKED_OUT = "Stocked out (%(num)s)"
MSG_USERS_TITLE = "Users (%(num)s)"
MSG_SCOPE_FACILITY = "facility %(code)s"
MSG_SCOPE_REGION = "region %(region)s"
MSG_SCOPE_NATIONAL = "national"
MSG_YES = "yes"
MSG_NO = "no"


def choose(lang: Optional[str]) -> str:
    """Set the language of this run; an unknown one is refused with the choices."""
    import typer

    lang = (lang or DEFAULT_LANGUAGE).strip().lower().replace("_", "-").split("-")[0]
    if lang not in LANGUAGES:
        raise typer.BadParameter(MSG_UNKNOWN_LANG % {"lang": lang, "choices": ", ".join(LANGUAGES)},
                                 param_hint="--lang")
    _lang.set(lang)
    return lang


def current() -> str:
    return _lang.get()


def t(message: str, **params: Any) -> str:
    """``message`` in the chosen language, its parameters isolated when written right to left."""
    lang = current()
    text = translations(lang).gettext(message)
    if not params:
        return text
    if lang in RTL_LANGUAGES:
        params = {k: words.isolate(v) for k, v in params.items()}
    return text % params


def label(enum: str, code: Any) -> str:
    """The name of an enum value in the chosen language; in English the code itself, as the
    commands take it (``--role facility_manager``, ``--status open``)."""
    if current() == DEFAULT_LANGUAGE:
        return "" if code is None else str(code)
    return words.label(current(), enum, code)


__all__ = ["choose", "current", "t", "label", "HEADERS"]
