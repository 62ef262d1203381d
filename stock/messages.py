"""Messages stored as a key and named parameters, and rendered in the reader's language when read.

A detector's reason or an alert is not written as English text but as a :class:`Message`: its key
is the English msgid, with named placeholders (``"Dispensed %(qty)s of %(item)s"``), and its
parameters are typed, so that each language formats them its own way when the message is read:

- ``count(n)``: a whole number that picks a plural form (the parameter named ``n`` does, in a
  message made with :func:`nmsg`);
- ``num(x, digits)``, ``pct(x)``, ``sci(x)``: numbers, written by Babel for the locale;
- ``qty(x, unit)``: a quantity with its unit, the unit's word in the reader's language and plural;
- ``day(d)``, ``month(d)``: dates, ISO in English, day-first in words elsewhere (never 12/7/26);
- ``code(s)``: codes, ids, user names, lot numbers, item names: data, shown as given and isolated
  for bidirectional text (Unicode FSI...PDI in text, ``<bdi>`` in HTML), so an Arabic paragraph
  does not scramble ``u-BEN-HC01-02``;
- ``join([...])``: messages or codes listed with the language's separator;
- a nested :class:`Message`: a phrase translated on its own.

A message is also a ``str``: its English rendering, which is what the database keeps in the
``reason`` text columns (exports and search read it), and what code that only needs text sees.
:func:`render` is the one renderer; ``web.messages`` gives it the reader's catalog.

The keys are extracted for translation by ``pybabel`` through :func:`extract` (named in
babel.cfg): calls of ``msg``, ``pmsg``, ``nmsg`` and ``npmsg`` (and ``unit_forms``) with literal
strings.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from gettext import NullTranslations
from html import escape
from typing import Any, Callable, Iterable

from babel import dates as babel_dates
from babel import lists as babel_lists
from babel import numbers as babel_numbers

FSI, PDI = "\u2068", "\u2069"
RTL = frozenset({"ar"})
_NULL = NullTranslations()


class Message(str):
    """A message key with typed named parameters; its ``str`` value is its English rendering."""

    key: str
    params: dict
    plural: str | None
    context: str | None

    def __new__(cls, key: str, params: dict | None = None, *, plural: str | None = None,
                context: str | None = None) -> "Message":
        params = dict(params or {})
        for name, value in params.items():
            if not isinstance(value, (Param, Message)):
                raise TypeError(f"message parameter {name!r} needs a type (count, num, code, ...), "
                                f"got {type(value).__name__}")
        if plural is not None and "n" not in params:
            raise TypeError("a plural message needs its count as the parameter n")
        self = super().__new__(cls, "")
        self.key, self.params, self.plural, self.context = key, params, plural, context
        text = render(self, "en")
        out = super().__new__(cls, text)
        out.key, out.params, out.plural, out.context = key, params, plural, context
        return out

    def to_json(self) -> dict:
        out: dict[str, Any] = {"key": self.key,
                               "params": {k: v.to_json() for k, v in self.params.items()}}
        if self.plural is not None:
            out["plural"] = self.plural
        if self.context is not None:
            out["context"] = self.context
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Message":
        return cls(data["key"], {k: _param_from_json(v) for k, v in (data.get("params") or {}).items()},
                   plural=data.get("plural"), context=data.get("context"))

    def __reduce__(self):
        return (Message.from_json, (self.to_json(),))


class Param:
    """One typed parameter: its ``kind`` says how a language writes ``value``."""

    __slots__ = ("kind", "value", "extra")

    def __init__(self, kind: str, value: Any, extra: Any = None):
        self.kind, self.value, self.extra = kind, value, extra

    def to_json(self) -> dict:
        value = self.value
        if self.kind == "join":
            value = [v.to_json() for v in value]
        out = {"type": self.kind, "value": value}
        if self.extra is not None:
            out["extra"] = self.extra
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, Param) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Param({self.kind!r}, {self.value!r})"


def _param_from_json(data: dict) -> "Param | Message":
    if "key" in data:
        return Message.from_json(data)
    kind, value = data["type"], data["value"]
    if kind == "join":
        value = [_param_from_json(v) for v in value]
    return Param(kind, value, data.get("extra"))


def _finite(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


# --- parameter constructors -------------------------------------------------------------------

def count(n) -> Param:
    return Param("count", int(n))


def num(x, digits: int | None = None) -> Param:
    """A number; ``digits`` fixes the decimals shown (``num(2.96, 1)`` is 3.0)."""
    return Param("num", _finite(x), digits)


def pct(share) -> Param:
    """A share (0.6) written as a percentage (60%); below 1% with one decimal."""
    return Param("pct", _finite(share))


def sci(x) -> Param:
    """A small probability in scientific notation (1.2e-05)."""
    return Param("sci", _finite(x))


def qty(x, unit: str) -> Param:
    """A quantity of an item in its unit: '90 tablets', '7.5 ml'."""
    return Param("qty", _finite(x), str(unit))


def day(d) -> Param:
    if isinstance(d, datetime):
        d = d.date()
    return Param("day", d.isoformat() if d is not None else None)


def month(d) -> Param:
    if isinstance(d, (date, datetime)):
        d = f"{d:%Y-%m}"
    return Param("month", str(d)[:7])


def code(value) -> Param:
    """Data shown as given and isolated: a code, id, user name, lot or prescription number, item
    name, health card."""
    return Param("code", "" if value is None else str(value))


def ordinal(n) -> Param:
    """A rank: 1st, 2nd (1re, 2e in French)."""
    return Param("ordinal", int(n))


def join(values: Iterable, sep: str = ";") -> Param:
    """Messages or codes in a list: ``sep`` ";" for clauses, "," for a list of names, "and" for a
    list that reads 'A, B and C'."""
    items = [v if isinstance(v, (Message, Param)) else code(v) for v in values]
    return Param("join", items, sep)


# --- message constructors (extracted for translation by their first literal arguments) --------

def msg(key: str, **params) -> Message:
    return Message(key, params)


def pmsg(context: str, key: str, **params) -> Message:
    """A message whose words are ambiguous without their ``context`` ("Open" the state, not the verb)."""
    return Message(key, params, context=context)


def nmsg(singular: str, plural: str, **params) -> Message:
    """A message with plural forms, chosen by the parameter ``n`` (a count)."""
    return Message(singular, params, plural=plural)


def npmsg(context: str, singular: str, plural: str, **params) -> Message:
    return Message(singular, params, plural=plural, context=context)


def unit_forms(singular: str, plural: str) -> tuple[str, str]:
    return singular, plural


# An item's unit in words, with its plural forms (context "unit"). Units not named here are
# written as the master data gives them, after the number.
UNITS: dict[str, tuple[str, str]] = {
    "tablet": unit_forms("%(n)s tablet", "%(n)s tablets"),
    "capsule": unit_forms("%(n)s capsule", "%(n)s capsules"),
    "vial": unit_forms("%(n)s vial", "%(n)s vials"),
    "ampoule": unit_forms("%(n)s ampoule", "%(n)s ampoules"),
    "piece": unit_forms("%(n)s piece", "%(n)s pieces"),
    "inhaler": unit_forms("%(n)s inhaler", "%(n)s inhalers"),
    "sachet": unit_forms("%(n)s sachet", "%(n)s sachets"),
    "bottle": unit_forms("%(n)s bottle", "%(n)s bottles"),
    "tube": unit_forms("%(n)s tube", "%(n)s tubes"),
    "box": unit_forms("%(n)s box", "%(n)s boxes"),
    "cycle": unit_forms("%(n)s cycle", "%(n)s cycles"),
    "pack": unit_forms("%(n)s pack", "%(n)s packs"),
    "dose": unit_forms("%(n)s dose", "%(n)s doses"),
    "ml": unit_forms("%(n)s ml", "%(n)s ml"),
    "l": unit_forms("%(n)s l", "%(n)s l"),
    "g": unit_forms("%(n)s g", "%(n)s g"),
    "mg": unit_forms("%(n)s mg", "%(n)s mg"),
    "kg": unit_forms("%(n)s kg", "%(n)s kg"),
    "mcg": unit_forms("%(n)s mcg", "%(n)s mcg"),
}
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


# --- storing -----------------------------------------------------------------------------------

def as_messages(value) -> list[Message]:
    """A reason as a list of messages: one message, a list of them, or none for plain text."""
    if isinstance(value, Message):
        return [value]
    if isinstance(value, Reasons):
        found = list(value.messages)
        return found if all(isinstance(m, Message) for m in found) else []
    if isinstance(value, (list, tuple)):
        return [m for m in value if isinstance(m, Message)]
    return []


def dump(messages: Iterable[Message]) -> list[dict] | None:
    out = [m.to_json() for m in messages]
    return out or None


def load(data) -> list[Message]:
    """Messages from a stored JSON column (None for a row written before messages)."""
    if not data:
        return []
    return [Message.from_json(d) for d in data]


def map_codes(messages, fn: Callable[[str], str]):
    """The message (a Message, Reasons or a list of messages) with every code parameter passed
    through ``fn`` (pseudonymising a card)."""
    def one(p):
        if isinstance(p, Message):
            return Message(p.key, {k: one(v) for k, v in p.params.items()}, plural=p.plural, context=p.context)
        if p.kind == "code":
            return Param("code", fn(p.value))
        if p.kind == "join":
            return Param("join", [one(x) for x in p.value], p.extra)
        return p
    if isinstance(messages, Message):
        return one(messages)
    if isinstance(messages, Reasons):
        return Reasons(one(m) for m in messages.messages)
    return [one(m) for m in messages]


# --- extraction ---------------------------------------------------------------------------------

_CALLS = {"msg": ("gettext", 1, False), "pmsg": ("pgettext", 1, True), "nmsg": ("ngettext", 2, False),
          "npmsg": ("npgettext", 2, True), "unit_forms": ("npgettext", 2, "unit")}


def extract(fileobj, keywords, comment_tags, options):
    """pybabel extraction method (named in babel.cfg) for modules that build messages."""
    import ast

    tree = ast.parse(fileobj.read())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name not in _CALLS:
            continue
        funcname, strings, context = _CALLS[name]
        args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                for a in node.args]
        if context is True:
            need = args[:1 + strings]
        elif context:
            need = [context] + args[:strings]
        else:
            need = args[:strings]
        if len(need) < strings + (1 if context else 0) or any(a is None for a in need):
            continue
        yield node.lineno, funcname, need[0] if len(need) == 1 else tuple(need), []


class Reasons(str):
    """Several messages read one after another (a finding with two reasons); its ``str`` value is
    their English renderings joined by a space."""

    messages: list

    def __new__(cls, messages: Iterable) -> "Reasons":
        items = [m for x in messages for m in (x.messages if isinstance(x, Reasons) else [x])]
        out = super().__new__(cls, " ".join(str(m) for m in items))
        out.messages = items
        return out
