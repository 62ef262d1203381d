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
from decimal import Decimal

from stock.errors import AlreadyReversed, InvalidEntry

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
