"""The rule book's entry: kinds, signs and fields, the shape of an entry, and the refusal every
rule raises (``Broken``). Pure, like the rest of the book (see stock.rules)."""


from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from stock.errors import AlreadyReversed, InvalidEntry
from stock.quantities import DIVISIBLE_UNITS, unit_allows


ADDS = ("receipt", "transfer_in")
"""Kinds that add their quantity to stock."""


SUBTRACTS = ("dispense", "transfer_out", "loss")
"""Kinds that take their quantity from stock."""


NEEDS_REASON = ("loss", "adjustment")


TRANSFERS = ("transfer_out", "transfer_in")


NEW_LOT_KINDS = ("receipt", "transfer_in", "count")
"""Kinds by which a lot first enters a facility's books."""


def signed(kind: str, quantity, on_hand=0):
    """Signed change to stock on hand; a count moves on hand to the counted quantity. Works on
    Decimals (one entry) and on whole thousandths (the bulk import's integers) alike."""
    if kind in ADDS or kind == "adjustment":
        return quantity
    if kind in SUBTRACTS:
        return -quantity
    return quantity - on_hand  # count


def fefo_key(expiry_date, lot_number: str, today):
    """First-expiry-first-out order of a lot: unexpired lots by expiry, those without a date after
    them, expired lots last; the lot number breaks ties. The counter and fulfilment both sort by it."""
    expired = expiry_date is not None and expiry_date < today
    return expired, expiry_date is None, expiry_date or date.max, lot_number


REQUIRED = ("entry_id", "occurred_at", "facility_code", "kind", "item_code", "quantity", "recorded_by")
"""Fields every entry states."""


MAX_TEXT = 64


LIMITED = ("entry_id", "lot_number", "health_card_id", "prescription_id", "document_number", "reverses",
           "recorded_by")
"""Texts of at most MAX_TEXT characters (identifiers and codes; a reason or counterparty is free text)."""


TEXTS = ("entry_id", "kind", "facility_code", "item_code", "recorded_by", "lot_number", "health_card_id",
         "prescription_id", "counterparty_code", "reason", "document_number", "reverses")
"""Texts that may hold no character the hash chain refuses (stock.chain.REFUSED). The serial number
keeps to GS1's character set besides (stock.gs1)."""


STRIPPED = TEXTS + ("serial_number",)
"""Texts the ledger keeps without surrounding white space, as the data contract's files are read
(stock.csvread strips every cell): the same movement stated to post() or in an import is one text,
so one hash in the chain."""


def stored_texts(values: dict) -> dict:
    """The texts of ``values`` (an entry's fields) that change when kept as the ledger keeps them:
    surrounding white space removed; an optional text that held only white space is no text (an
    empty cell of a file is none either)."""
    changed = {}
    for name in STRIPPED:
        value = values.get(name)
        if isinstance(value, str):
            kept = value.strip()
            if kept != value:
                changed[name] = kept if kept or name in REQUIRED or name == "lot_number" else None
    return changed


MAX_REASON = 2000
"""A reason or counterparty is at most this long (on both databases alike: SQLite would store any
length, PostgreSQL refuses past its column's)."""


EARLIEST_OCCURRED = datetime(2000, 1, 1, tzinfo=timezone.utc)


LATEST_OCCURRED = datetime(2100, 1, 1, tzinfo=timezone.utc)
"""Movements happen within these bounds: a date like 0001-01-01 is a typing or system error, and
one such entry would break every calculation that reaches a month or a day around it."""


KIND_NEEDS = {"dispense": ("health_card_id",), "transfer_out": ("counterparty_code",),
              "transfer_in": ("counterparty_code",), "loss": ("reason",), "adjustment": ("reason",)}
"""Fields a kind requires beyond REQUIRED."""


KIND_FORBIDS = {kind: ("health_card_id", "prescription_id") for kind in ("receipt", "transfer_out", "transfer_in")}
"""Fields a kind may not carry: a patient and a prescription belong to a dispense (a loss, an
adjustment or a count may name the dispense's patient when it corrects one)."""


def sign_allows(kind: str, quantity):
    """Whether ``quantity`` has the sign ``kind`` needs: non-zero (signed) for an adjustment, the
    counted quantity (>= 0) for a count, greater than zero otherwise. Works on numbers and on numpy
    arrays of one kind alike."""
    if kind == "adjustment":
        return quantity != 0
    if kind == "count":
        return quantity >= 0
    return quantity > 0


class Broken(InvalidEntry):
    """A rule of the book the entry breaks. ``code`` names the rule, ``template`` words it (an
    ``MSG_`` constant of this module) and ``params`` fill the template."""

    def __init__(self, code: str, field: str, template: str, *, entry_id: str | None = None, **params):
        super().__init__(template % params, field=field, entry_id=entry_id)
        self.code, self.template, self.params = code, template, params


class ReversalConflict(AlreadyReversed, Broken):
    """The entry named in ``reverses`` is a reversal itself, or was reversed before: a conflict
    with what is recorded (HTTP 409), not a malformed entry."""


MSG_REVERSAL_REASON = "A reversal needs a reason."


def reversal_reason_problem(reverses: str | None, reason: str | None, *, entry_id: str | None = None) -> Broken | None:
    """A reversal always states why."""
    if reverses and not (reason and reason.strip()):
        return Broken("reversal_reason", "reason", MSG_REVERSAL_REASON, entry_id=entry_id)
    return None


MSG_REQUIRED = "%(name)s is required"
MSG_TOO_LONG = "%(name)s is longer than %(limit)s characters"
MSG_UNKNOWN_KIND = "kind %(kind)s is not one of %(kinds)s"
MSG_NO_ZONE = "occurred_at must be a timestamp with a zone offset"
MSG_OUT_OF_RANGE = "occurred_at %(occurred)s is outside %(first)s-%(last)s"
MSG_NOT_A_NUMBER = "quantity %(quantity)s is not a number"
MSG_ADJUSTMENT_SIGN = "an adjustment's quantity must be non-zero (signed)"
MSG_COUNT_SIGN = "a count's quantity is the quantity counted and cannot be negative (%(quantity)s)"
MSG_POSITIVE = "a %(kind)s's quantity must be greater than zero (%(quantity)s)"
MSG_NEEDS_CARD = "a dispense needs the patient's health_card_id"
MSG_NEEDS_COUNTERPARTY = "a %(kind)s needs the other facility's code in counterparty_code"
MSG_NEEDS_REASON = "a %(kind)s needs a reason"
MSG_FORBIDDEN = "a %(kind)s carries no %(name)s"
NEEDS_WORDS = {"health_card_id": MSG_NEEDS_CARD, "counterparty_code": MSG_NEEDS_COUNTERPARTY,
               "reason": MSG_NEEDS_REASON}


def sign_problem(kind: str, quantity, *, shown=None, entry_id: str | None = None) -> Broken | None:
    """Why ``quantity`` has the wrong sign for ``kind``, or None; ``shown``: the quantity as typed,
    for the words (the bulk import holds thousandths)."""
    if sign_allows(kind, quantity):
        return None
    template = {"adjustment": MSG_ADJUSTMENT_SIGN, "count": MSG_COUNT_SIGN}.get(kind, MSG_POSITIVE)
    return Broken("sign", "quantity", template, entry_id=entry_id, kind=kind,
                  quantity=quantity if shown is None else shown)


MSG_NOT_WHOLE = "%(quantity)s is not a whole number of %(unit)ss (%(item)s)"
MSG_TRANSFER_TO_ITSELF = "a transfer's counterparty must be another facility"


def divisible(unit: str) -> bool:
    """Whether a quantity of ``unit`` may have a fractional part (up to three places)."""
    return unit.strip().lower() in DIVISIBLE_UNITS


def whole_units_problem(unit: str, quantity: Decimal, item: str, *, shown=None,
                        entry_id: str | None = None) -> Broken | None:
    """Why ``quantity`` cannot be counted in ``unit``: only a divisible unit takes a fractional part,
    of at most three places. ``shown``: the quantity as typed, for the words."""
    if unit_allows(unit, quantity):
        return None
    return Broken("whole_units", "quantity", MSG_NOT_WHOLE, entry_id=entry_id, unit=unit, item=item,
                  quantity=quantity if shown is None else shown)


def transfers_to_itself(is_transfer, facility, counterparty):
    """Whether a transfer names its own facility as the other end. Works on one value and on
    numpy arrays or pandas columns alike."""
    return is_transfer & (counterparty != "") & (counterparty == facility)


def transfer_problem(kind: str, facility: str, counterparty: str | None, *,
                     entry_id: str | None = None) -> Broken | None:
    """A transfer goes to or comes from another facility."""
    if transfers_to_itself(kind in TRANSFERS, facility, counterparty or ""):
        return Broken("transfer_to_itself", "counterparty_code", MSG_TRANSFER_TO_ITSELF, entry_id=entry_id)
    return None


def kind_field_problem(kind: str, values: dict, *, entry_id: str | None = None) -> Broken | None:
    """A field ``kind`` needs and ``values`` lacks, or one it may not carry and they hold."""
    for name in KIND_NEEDS.get(kind, ()):
        value = values.get(name)
        if not (value and value.strip()):
            return Broken("needs", name, NEEDS_WORDS[name], entry_id=entry_id, kind=kind)
    for name in KIND_FORBIDS.get(kind, ()):
        if values.get(name):
            return Broken("forbidden", name, MSG_FORBIDDEN, entry_id=entry_id, kind=kind, name=name)
    return None


def shape_problem(e, kinds: tuple[str, ...], refused_character) -> Broken | None:
    """What can be checked of entry ``e`` (a stock.ledger.NewEntry) without the database, in the
    order a person fixes it: presence, length, characters, kind, time zone, quantity, kind's
    fields. ``refused_character(text)`` says why the chain cannot hold a text (stock.chain)."""
    eid = e.entry_id or None
    for name in ("entry_id", "facility_code", "item_code", "recorded_by"):
        value = getattr(e, name)
        if not value or not value.strip():
            return Broken("required", name, MSG_REQUIRED, entry_id=eid, name=name)
    for name in LIMITED:
        value = getattr(e, name)
        if value is not None and len(value) > MAX_TEXT:
            return Broken("too_long", name, MSG_TOO_LONG, entry_id=eid, name=name, limit=MAX_TEXT)
    for name in ("reason", "counterparty_code"):
        value = getattr(e, name)
        if value is not None and len(value) > MAX_REASON:
            return Broken("too_long", name, MSG_TOO_LONG, entry_id=eid, name=name, limit=MAX_REASON)
    for name in TEXTS:
        value = getattr(e, name)
        problem = isinstance(value, str) and refused_character(value)
        if problem:
            return Broken("character", name, problem.replace("%", "%%"), entry_id=eid)
    if e.kind not in kinds:
        return Broken("kind", "kind", MSG_UNKNOWN_KIND, entry_id=eid, kind=repr(e.kind), kinds=", ".join(kinds))
    occurred = e.occurred_at
    if getattr(occurred, "tzinfo", None) is None or occurred.utcoffset() is None:
        return Broken("zone", "occurred_at", MSG_NO_ZONE, entry_id=eid)
    if not EARLIEST_OCCURRED <= occurred < LATEST_OCCURRED:
        return Broken("range", "occurred_at", MSG_OUT_OF_RANGE, entry_id=eid, occurred=str(occurred.date()),
                      first=EARLIEST_OCCURRED.year, last=LATEST_OCCURRED.year - 1)
    q = e.quantity
    if not isinstance(q, Decimal) or not q.is_finite():
        return Broken("number", "quantity", MSG_NOT_A_NUMBER, entry_id=eid, quantity=repr(q))
    return (sign_problem(e.kind, q, entry_id=eid)
            or kind_field_problem(e.kind, vars(e), entry_id=eid)
            or reversal_reason_problem(e.reverses, e.reason, entry_id=eid))

