"""The rule book's rules of a movement against what is recorded: the reversal rule, the time rule,
the lot and expiry rule, the idempotency comparison, and what a transfer received short records.
Pure, like the rest of the book (see stock.rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from stock.rules.entry import Broken, NEW_LOT_KINDS, ReversalConflict


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

