"""Rendering messages (stock.messages) for one language and catalog: Babel's numbers and dates,
units and plurals from the catalog, codes isolated for bidirectional text."""

from __future__ import annotations

import re
from datetime import date
from gettext import NullTranslations
from html import escape
from typing import Callable, Iterable

from babel import dates as babel_dates
from babel import lists as babel_lists
from babel import numbers as babel_numbers

from stock.messages import FSI, PDI, RTL, UNITS, Message, Param, Reasons

_NULL = NullTranslations()

def _en_ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


_ORDINALS: dict[str, Callable[[int], str]] = {"en": _en_ordinal, "fr": lambda n: "1re" if n == 1 else f"{n}e",
                                               "ar": lambda n: babel_numbers.format_decimal(n, locale="ar")}
_PLACEHOLDER = re.compile(r"%\([a-z_]+\)s")
_WORDS = re.compile(r"[A-Za-z]{2,}")
_SEPARATORS = {";": {"en": "; ", "fr": " ; ", "ar": "؛ "}, ",": {"en": ", ", "ar": "، "}, "/": {"en": "/"},
               " ": {"en": " "}, "; and": {"en": "; and ", "fr": " ; et ", "ar": "؛ و"}}
_UNCOUNTABLE = {"ml", "l", "g", "kg", "mg", "mcg", "iu"}


# --- rendering ---------------------------------------------------------------------------------

class Renderer:
    """Renders messages for one language with one catalog; ``html`` escapes and uses ``<bdi>``.
    ``missing`` (a set) collects every key the catalog had no translation for."""

    def __init__(self, lang: str = "en", translations=None, *, html: bool = False,
                 missing: set | None = None):
        self.lang = lang
        self.tr = translations or _NULL
        self.html = html
        self.missing = missing

    # words
    def _lookup(self, key: str, plural: str | None, context: str | None, n: int) -> str:
        tr = self.tr
        if plural is None:
            out = tr.pgettext(context, key) if context else tr.gettext(key)
        else:
            out = tr.npgettext(context, key, plural, n) if context else tr.ngettext(key, plural, n)
        if self.missing is not None and not self._known(key, plural, context, out):
            self.missing.add(key)
        return out

    def _known(self, key: str, plural: str | None, context: str | None, out: str) -> bool:
        """Whether the catalog holds ``key`` (a translation identical to the English counts)."""
        catalog = getattr(self.tr, "_catalog", None)
        if catalog is None:  # no catalog to ask: a translation that is the msgid is taken as missing
            return out not in (key, plural) or not _WORDS.search(_PLACEHOLDER.sub("", key))
        msgid = f"{context}\x04{key}" if context else key
        return (msgid, 0) in catalog if plural is not None else msgid in catalog

    def _isolate(self, text: str) -> str:
        if self.html:
            return f"<bdi>{escape(text)}</bdi>"
        return f"{FSI}{text}{PDI}" if self.lang != "en" else text

    def _number(self, text: str) -> str:
        """Numbers are isolated where text runs right to left, so -30 does not read 30-."""
        if self.lang in RTL:
            return f"<bdi>{text}</bdi>" if self.html else f"{FSI}{text}{PDI}"
        return text

    def message(self, m: Message) -> str:
        n = m.params["n"].value if m.plural is not None and isinstance(m.params.get("n"), Param) else 1
        n = int(n) if float(n).is_integer() else 100  # a fraction takes the general ("other") form, as units do
        template = self._lookup(m.key, m.plural, m.context, n)
        if self.html:
            template = escape(template, quote=False)
        values = {name: self.value(p) for name, p in m.params.items()}
        try:
            return template % values
        except (KeyError, ValueError, TypeError):  # a broken translation must not lose the message
            source = m.key if m.plural is None or n == 1 else m.plural
            return (escape(source, quote=False) if self.html else source) % values

    def value(self, p: "Param | Message") -> str:
        if isinstance(p, Message):
            return self.message(p)
        kind, v, extra = p.kind, p.value, p.extra
        if kind == "code":
            return self._isolate(v)
        if v is None and kind in ("num", "pct", "sci", "qty", "day"):
            return "?"
        if kind == "count":
            return self._number(babel_numbers.format_decimal(v, locale=self.lang))
        if kind == "num":
            return self._number(self._decimal(v, extra))
        if kind == "pct":
            pattern = "#,##0%" if v >= 0.01 or v == 0 else "#,##0.0%"
            return self._number(babel_numbers.format_percent(v, pattern, locale=self.lang))
        if kind == "sci":
            text = f"{v:.1e}" if self.lang == "en" else babel_numbers.format_scientific(v, "0.0E0",
                                                                                        locale=self.lang)
            return self._number(text)
        if kind == "qty":
            return self._quantity(v, extra)
        if kind == "ordinal":
            return self._number(_ORDINALS.get(self.lang, _ORDINALS["ar"])(v))
        if kind == "day":
            d = date.fromisoformat(v)
            return v if self.lang == "en" else babel_dates.format_date(d, "long", locale=self.lang)
        if kind == "month":
            if self.lang == "en":
                return v
            return babel_dates.format_skeleton("yMMMM", date.fromisoformat(v + "-01"), locale=self.lang)
        if kind == "join":
            parts = [self.value(x) for x in v]
            if extra == "and":
                return babel_lists.format_list(parts, locale=self.lang) if parts else ""
            sep = _SEPARATORS.get(extra, {}).get(self.lang) or _SEPARATORS.get(extra, {}).get("en", extra)
            return sep.join(parts)
        raise ValueError(f"unknown message parameter type {kind!r}")

    def _decimal(self, v: float, digits: int | None) -> str:
        if digits is None:
            return babel_numbers.format_decimal(v, locale=self.lang)
        pattern = "#,##0." + "0" * digits if digits > 0 else "#,##0"
        return babel_numbers.format_decimal(round(v, digits), format=pattern, locale=self.lang)

    def _quantity(self, v: float, unit: str) -> str:
        number = self._number(babel_numbers.format_decimal(v, locale=self.lang))
        if self.lang == "en":
            return _english_amount(number, v, unit)
        forms = UNITS.get(unit.lower())
        if forms is None:
            return f"{number} {self._isolate(unit)}"
        n = int(v) if float(v).is_integer() else 100
        template = self._lookup(forms[0], forms[1], "unit", n)
        if self.html:
            template = escape(template, quote=False)
        return template % {"n": number}


def _english_amount(number: str, value: float, unit: str) -> str:
    """'100 tablets', '1 vial', '7.5 ml', as the English reasons have always written them."""
    if unit.lower() in _UNCOUNTABLE or value == 1 or unit.endswith("s"):
        return f"{number} {unit}"
    return f"{number} {unit}es" if unit.endswith(("ch", "sh", "x")) else f"{number} {unit}s"


def render(message: "Message | Iterable[Message] | str | None", lang: str = "en", translations=None, *,
           html: bool = False, missing: set | None = None) -> str:
    """``message`` (or several, one after another) in ``lang`` with ``translations``; plain
    text stays as it is (a stored reason from before messages). ``html`` returns escaped HTML."""
    r = Renderer(lang, translations, html=html, missing=missing)
    if message is None:
        return ""
    if isinstance(message, Message):
        return r.message(message)
    if isinstance(message, Reasons):
        message = message.messages
    elif isinstance(message, str):
        return escape(message, quote=False) if html else message
    return " ".join(r.message(m) if isinstance(m, Message) else (escape(m, quote=False) if html else m)
                    for m in message)
