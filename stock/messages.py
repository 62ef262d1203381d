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
from datetime import date, datetime
from typing import Any, Callable, Iterable


FSI, PDI = "\u2068", "\u2069"
RTL = frozenset({"ar"})


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


def render(message: "Message | Iterable[Message] | str | None", lang: str = "en", translations=None, *,
           html: bool = False, missing: set | None = None) -> str:
    """``message`` (or several, one after another) in ``lang`` with ``translations``; plain
    text stays as it is (a stored reason from before messages). ``html`` returns escaped HTML.
    (The renderer is stock.message_render.)"""
    from stock.message_render import render as rendered

    return rendered(message, lang, translations, html=html, missing=missing)


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
        if isinstance(p, str) and not isinstance(p, Message):  # plain text beside messages
            return fn(p)
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


__all__ = ["Message", "Param", "Reasons", "count", "num", "pct", "sci", "qty", "day", "month", "ordinal", "code",
           "join", "msg", "pmsg", "nmsg", "npmsg", "unit_forms", "UNITS", "render", "as_messages", "dump", "load",
           "map_codes", "extract", "FSI", "PDI"]
