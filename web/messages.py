"""Stored messages (stock.messages) rendered in the reader's language, when they are read.

A flag's reason, a detector's finding or an alert is kept as message keys with typed parameters;
this is where they meet the reader's catalog (web/locale): numbers and dates written for the
locale, units and plurals in its words, codes, ids and names isolated for bidirectional text
(``<bdi>`` in HTML, Unicode FSI...PDI in plain text and e-mail). Pages use the template filters
``reason`` (a row with ``messages`` and ``reason``) and ``message``; the API and the CLI call
:func:`reason_text` and :func:`render`.

A row stored before messages were kept has none: its stored text is shown as it was written.
"""

from __future__ import annotations

from typing import Any, Iterable

from markupsafe import Markup

from stock import messages as core
from stock.messages import Message


def _translations(lang: str):
    from web.templating import translations

    return translations(lang)


def _language(lang: str | None) -> str:
    from web.templating import DEFAULT_LANGUAGE, LANGUAGES

    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def stored(value: Any, cards: Iterable[str] = (), key: str | None = None) -> list[Message]:
    """Messages from what a row keeps (JSON from the database, or messages already), with the
    health cards in ``cards`` named by their pseudonym under ``key``."""
    if not value:
        return []
    found = core.as_messages(value) if not isinstance(value[0], dict) else core.load(value)
    cards = [c for c in cards if c]
    if cards:
        from stock.pseudonyms import pseudonymise_text

        found = core.map_codes(found, lambda text: pseudonymise_text(text, cards, key))
    return found


def render(value: Any, lang: str | None, *, html: bool = False, missing: set | None = None) -> str:
    """Messages (or stored JSON of them, or plain text) in ``lang``; ``html`` gives Markup."""
    lang = _language(lang)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        value = core.load(value)
    out = core.render(value, lang, _translations(lang), html=html, missing=missing)
    return Markup(out) if html else out


def reason_text(row: Any, lang: str | None, *, html: bool = False, cards: Iterable[str] = (),
                key: str | None = None) -> str:
    """A flag's or hit's reason (anything with ``messages`` and ``reason``, or such a dict) in
    ``lang``: its messages when it has them, else the text it was stored with."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name, None)
    found = stored(get("messages"), cards, key)
    if found:
        return render(found, lang, html=html)
    text = get("reason") or ""
    if cards:
        from stock.pseudonyms import pseudonymise_text

        text = pseudonymise_text(text, list(cards), key)
    return render(text, lang, html=html)


def as_json(value: Any, cards: Iterable[str] = (), key: str | None = None) -> list[dict] | None:
    """Stored messages as the API gives them (key, plural, context, typed parameters), patients
    by pseudonym; None for a row kept as text only."""
    found = stored(value, cards, key)
    return [m.to_json() for m in found] or None


# --- template filters -------------------------------------------------------------------------

def _page_lang(context) -> str:
    from web.templating import _lang_of

    return _lang_of(context)


def _reason_filter():
    from jinja2 import pass_context

    @pass_context
    def reason(context, row, html: bool = True):
        return reason_text(row, _page_lang(context), html=html)

    return reason


def _message_filter():
    from jinja2 import pass_context

    @pass_context
    def message(context, value, html: bool = True):
        return render(value, _page_lang(context), html=html)

    return message


def install(env) -> None:
    """Make ``reason`` and ``message`` filters of a Jinja environment."""
    env.filters.update(reason=_reason_filter(), message=_message_filter())


__all__ = ["render", "reason_text", "stored", "as_json", "install"]
