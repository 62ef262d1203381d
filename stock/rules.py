"""The ledger's rule book: what makes a movement acceptable, declared once.

Every write path executes these declarations: ``stock.ledger.post`` row by row and
``stock.bulk.post_frame`` column by column (it reads the same tables and calls the same
functions); pages and the API take their field errors from them. Nothing here touches a database:
each rule is a pure function of the values it is handed, so both engines can hand it what they
hold (a row, or a stored entry read back).

Each refusal is a ``Broken`` with a code, the field it is about and an English template with named
placeholders. The templates are module-level ``MSG_`` constants: pybabel extracts them (see
babel.cfg), so a page shows the refusal in its reader's language with
``web.templating.gettext(lang, exc.template, **exc.params)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from stock.errors import AlreadyReversed, InvalidEntry
from stock.quantities import DIVISIBLE_UNITS, unit_allows

# --- kinds, signs and fields -------------------------------------------------------------------

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


# --- refusals ----------------------------------------------------------------------------------

class Broken(InvalidEntry):
    """A rule of the book the entry breaks. ``code`` names the rule, ``template`` words it (an
    ``MSG_`` constant of this module) and ``params`` fill the template."""

    def __init__(self, code: str, field: str, template: str, *, entry_id: str | None = None, **params):
        super().__init__(template % params, field=field, entry_id=entry_id)
        self.code, self.template, self.params = code, template, params


class ReversalConflict(AlreadyReversed, Broken):
    """The entry named in ``reverses`` is a reversal itself, or was reversed before: a conflict
    with what is recorded (HTTP 409), not a malformed entry."""


# --- the reversal rule -------------------------------------------------------------------------

MSG_REVERSAL_REASON = "A reversal needs a reason."
MSG_REVERSES_UNKNOWN = "reverses names entry %(target)s, which is not recorded before this one"
MSG_IS_REVERSAL = ("Entry %(entry)s is itself a reversal (of %(target)s) and cannot be reversed; record a new "
                   "movement instead.")
MSG_ALREADY_REVERSED = "Entry %(entry)s was already reversed."
MSG_NOTHING_TO_REVERSE = "Entry %(entry)s changed no stock; there is nothing to reverse."
MSG_COUNT_CANNOT_REVERSE = "A count cannot reverse an entry: reverse it with an adjustment."
MSG_NOT_INVERSE_FACILITY = ("Entry %(entry)s is of another facility than %(target)s, so it cannot reverse it: a "
                            "reversal is the exact inverse of its target.")
MSG_NOT_INVERSE_ITEM = ("Entry %(entry)s is of another item than %(target)s, so it cannot reverse it: a reversal "
                        "is the exact inverse of its target.")
MSG_NOT_INVERSE_LOT = ("Entry %(entry)s is of another lot than %(target)s, so it cannot reverse it: a reversal "
                       "is the exact inverse of its target.")
MSG_NOT_INVERSE_EFFECT = ("Entry %(entry)s changes stock by %(effect)s; reversing %(target)s takes %(inverse)s. "
                          "A partial correction is an adjustment without reverses.")


@dataclass(frozen=True)
class Movement:
    """What the reversal rule compares of an entry. ``facility`` and ``item`` are whatever keys the
    caller holds (codes or ids), the same on both sides; ``effect`` in the caller's unit."""

    entry_id: str
    facility: object
    item: object
    lot: str
    effect: object
    reverses: str | None = None


def reversal_problem(entry: Movement, kind: str, target: Movement | None,
                     reversed_by: str | None) -> Broken | None:
    """Why ``entry`` (of ``kind``) may not reverse ``target`` (None: no such entry recorded before
    it), which ``reversed_by`` already reversed (None: not yet); None when it may. A reversal is
    the exact inverse of its target: same facility, item and lot, the opposite effect of the same
    quantity; the target is no reversal itself and is reversed once."""
    name = entry.reverses
    if target is None:
        return Broken("reverses_unknown", "reverses", MSG_REVERSES_UNKNOWN, entry_id=entry.entry_id,
                              target=repr(name))
    if target.reverses:
        return ReversalConflict("is_reversal", "reverses", MSG_IS_REVERSAL, entry_id=entry.entry_id,
                              entry=name, target=target.reverses)
    if reversed_by is not None:
        return ReversalConflict("already_reversed", "reverses", MSG_ALREADY_REVERSED, entry_id=entry.entry_id,
                              entry=name)
    if not target.effect:
        return Broken("nothing_to_reverse", "reverses", MSG_NOTHING_TO_REVERSE,
                              entry_id=entry.entry_id, entry=name)
    if kind == "count":
        return Broken("count_reverses", "kind", MSG_COUNT_CANNOT_REVERSE, entry_id=entry.entry_id)
    for template, mine, theirs in ((MSG_NOT_INVERSE_FACILITY, entry.facility, target.facility),
                                   (MSG_NOT_INVERSE_ITEM, entry.item, target.item),
                                   (MSG_NOT_INVERSE_LOT, entry.lot, target.lot),
                                   (MSG_NOT_INVERSE_EFFECT, entry.effect, -target.effect)):
        if mine != theirs:
            field = "quantity" if template is MSG_NOT_INVERSE_EFFECT else "reverses"
            return Broken("not_inverse", field, template, entry_id=entry.entry_id, entry=entry.entry_id,
                                  target=name, effect=entry.effect, inverse=-target.effect)
    return None



def reversal_reason_problem(reverses: str | None, reason: str | None, *, entry_id: str | None = None) -> Broken | None:
    """A reversal always states why."""
    if reverses and not (reason and reason.strip()):
        return Broken("reversal_reason", "reason", MSG_REVERSAL_REASON, entry_id=entry_id)
    return None


# --- the shape of an entry -------------------------------------------------------------------

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


# --- the time rule ---------------------------------------------------------------------------

CLOCK_SKEW = timedelta(minutes=5)
"""How far a movement may seem to happen after it was recorded: the clocks of a tablet and the
server disagree a little. Anything later is a typing error or an attempt to pre-date stock."""
MSG_FUTURE = ("occurred_at %(occurred)s is after the entry was recorded (%(recorded)s): a movement is "
              "recorded once it has happened")
MSG_LATE = ("occurred_at %(occurred)s is more than %(days)s days before the entry was recorded: state in "
            "reason why it is entered this late")
_US = 1_000_000


def future_mask(occurred_us, recorded_us):
    """Whether each movement happens after it was recorded, beyond CLOCK_SKEW (epoch
    microseconds; numbers or numpy arrays)."""
    return occurred_us > recorded_us + int(CLOCK_SKEW.total_seconds()) * _US


def late_mask(occurred_us, recorded_us, catch_up: timedelta | None):
    """Whether each movement was recorded more than ``catch_up`` after it happened (never, when
    there is no catch-up window)."""
    if catch_up is None:
        return occurred_us != occurred_us
    return occurred_us < recorded_us - int(catch_up.total_seconds()) * _US


def time_problem(occurred_us: int, recorded_us: int, reason: str | None, catch_up: timedelta | None, *,
                 occurred: str, recorded: str, entry_id: str | None = None) -> Broken | None:
    """The time rule for one entry: not after its recording (beyond the clock skew), and, when
    older than the ``catch_up`` window at its recording, entered with a reason."""
    if future_mask(occurred_us, recorded_us):
        return Broken("future", "occurred_at", MSG_FUTURE, entry_id=entry_id, occurred=occurred, recorded=recorded)
    if late_mask(occurred_us, recorded_us, catch_up) and not (reason and reason.strip()):
        return Broken("late", "reason", MSG_LATE, entry_id=entry_id, occurred=occurred,
                      days=catch_up.days if catch_up else 0)
    return None


# --- the lot and expiry rule -----------------------------------------------------------------

DESTRUCTION = "destruction"
"""The reason a receipt states when an expired lot comes in only to be destroyed: the one way an
expired lot enters the books by a receipt."""
MSG_NO_LOT = "%(item)s has no lot %(lot)s: a lot enters by a receipt or transfer_in"
MSG_EXPIRY_REQUIRED = "expiry_date is required on the %(kind)s of new lot %(lot)s of %(item)s"
MSG_EXPIRY_DIFFERS = "lot %(lot)s of %(item)s expires on %(stored)s, not %(given)s"
MSG_EXPIRED_RECEIPT = ("lot %(lot)s of %(item)s expired on %(expiry)s: an expired lot is received only for "
                       "destruction (reason %(reason)s)")


def expiry_differs(given, stored):
    """Whether a stated expiry contradicts the lot's recorded one. ISO dates as text, '' for none;
    works on one value and on numpy arrays alike."""
    return (given != "") & (stored != "") & (given != stored)


def expired_on_receipt(kind, expiry, day, reason):
    """Whether a receipt brings in a lot expired before the day it happens (``day``: ISO date of
    occurred_at in UTC), and does not say it comes for destruction. ISO dates as text, '' for none;
    ``reason`` stripped. Works on one value and on numpy arrays alike."""
    return (kind == "receipt") & (expiry != "") & (expiry < day) & (reason != DESTRUCTION)


def lot_problem(kind: str, item: str, lot: str, given: str, stored: str | None, day: str, reason: str | None, *,
                entry_id: str | None = None) -> Broken | None:
    """The lot and expiry rule for one entry of ``item``'s ``lot``: ``given`` the expiry it states,
    ``stored`` the lot's recorded expiry (None: no such lot yet), ``day`` the UTC date it happens.
    A lot enters by a receipt, transfer_in or count, with its expiry unless counted; a stated
    expiry agrees with the recorded one; a receipt of an expired lot is for destruction."""
    if stored is None:
        if kind not in NEW_LOT_KINDS:
            return Broken("no_lot", "lot_number", MSG_NO_LOT, entry_id=entry_id, item=item, lot=repr(lot))
        if lot and not given and kind != "count":
            return Broken("expiry_required", "expiry_date", MSG_EXPIRY_REQUIRED, entry_id=entry_id, kind=kind,
                          lot=lot, item=item)
        stored = given
    elif expiry_differs(given, stored):
        return Broken("expiry_differs", "expiry_date", MSG_EXPIRY_DIFFERS, entry_id=entry_id, lot=lot, item=item,
                      stored=stored, given=given)
    if expired_on_receipt(kind, stored, day, (reason or "").strip()):
        return Broken("expired_receipt", "expiry_date", MSG_EXPIRED_RECEIPT, entry_id=entry_id, lot=lot or "—",
                      item=item, expiry=stored, reason=repr(DESTRUCTION))
    return None


# --- idempotency -----------------------------------------------------------------------------

CONTENT = ("kind", "facility_code", "item_code", "lot_number", "quantity", "occurred_at", "recorded_by",
           "health_card_id", "prescription_id", "counterparty_code", "reason", "document_number", "reverses",
           "serial_number")
"""What makes two entries with one entry_id the same movement (expiry belongs to the lot): a retry
of the same content is answered with what is recorded, other content is a conflict."""
MSG_DUPLICATE = "entry %(entry)s already appears on line %(line)s with different content"


def content_differences(stored, given) -> dict[str, tuple]:
    """Fields whose values differ between two entries' CONTENT (each a sequence in CONTENT order, in
    the caller's one representation: the lot number stripped, the quantity and the time in one unit);
    an empty text and none are the same."""
    return {name: (old, new) for name, old, new in zip(CONTENT, stored, given)
            if ("" if old is None else old) != ("" if new is None else new)}


# --- transfers received short ------------------------------------------------------------------

SHORT_ON_ARRIVAL = "short on arrival"
"""How the loss that records what a transfer lacked on arrival begins its reason."""
MSG_SHORT_REASON = "%(received)s received of %(sent)s sent: state why the rest is missing."


def short_arrival_problem(sent, received, reason: str | None, *, entry_id: str | None = None) -> Broken | None:
    """A transfer received short states why: the missing quantity is recorded as a loss."""
    if received < sent and not (reason and reason.strip()):
        return Broken("short_reason", "reason", MSG_SHORT_REASON, entry_id=entry_id, sent=sent, received=received)
    return None


def short_arrival_reason(reason: str) -> str:
    """The reason of the loss that records a transfer's missing quantity."""
    return f"{SHORT_ON_ARRIVAL}: {reason.strip()}"
