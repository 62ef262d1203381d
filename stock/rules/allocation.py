"""The rule book's allocation of a quantity across lots: first expiry first out.

A quantity of an item taken from a facility (a dispense at the counter, a line of a visit, an
imported dispense naming no lot) comes from as many lots as it needs, the first to expire first;
expired lots are never proposed. It is refused only when the facility's whole usable stock of the
item is short. Pure, like the rest of the book: it is handed the lots on hand (stock.lots reads
them) and says which to take from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from stock.rules.entry import Broken, fefo_key

MSG_SHORT_USABLE = "Only %(usable)s usable on hand (expired lots not counted), %(asked)s asked."
MSG_LOT_NOT_USABLE = "Lot %(lot)s is not a usable lot of this item here."
MSG_LOT_SHORT = "Lot %(lot)s holds %(on_hand)s, %(asked)s asked."
MSG_SPLIT_SUM = "The lots add up to %(total)s, not the quantity %(asked)s."


@dataclass(frozen=True)
class LotChoice:
    """A lot of an item on hand at a facility."""

    lot_number: str
    expiry_date: date | None
    on_hand: Decimal
    expired: bool


@dataclass(frozen=True)
class Take:
    """How much of a quantity comes from one lot."""

    lot_number: str
    expiry_date: date | None
    quantity: Decimal


def fefo_order(lots: list[LotChoice], today: date) -> list[LotChoice]:
    """Lots first-expiry-first-out: unexpired ones by expiry (those without a date after them),
    then expired ones."""
    return sorted(lots, key=lambda c: fefo_key(c.expiry_date, c.lot_number, today))


def usable(lots: list[LotChoice], today: date) -> list[LotChoice]:
    """The lots a quantity may be proposed from: unexpired, with something on hand, FEFO order."""
    return [c for c in fefo_order(lots, today)
            if c.on_hand > 0 and not (c.expiry_date is not None and c.expiry_date < today)]


def fefo_split(lots: list[LotChoice], wanted: Decimal, today: date) -> list[Take]:
    """``wanted`` taken from the usable lots, first expiry first, as many lots as it needs.
    Raises Broken (field quantity) when the usable stock of the item is short."""
    candidates = usable(lots, today)
    total = sum((c.on_hand for c in candidates), Decimal(0))
    if total < wanted:
        raise Broken("short_usable", "quantity", MSG_SHORT_USABLE, usable=total, asked=wanted)
    takes, left = [], wanted
    for c in candidates:
        if left <= 0:
            break
        take = min(c.on_hand, left)
        takes.append(Take(c.lot_number, c.expiry_date, take))
        left -= take
    return takes


def override_problem(lots: list[LotChoice], chosen: list[tuple[str, Decimal]], wanted: Decimal,
                     today: date) -> Broken | None:
    """Why a split chosen by hand (lot number, quantity) cannot be taken, or None. Each lot must be
    a usable lot holding what is taken from it, and the parts must add up to the line's quantity.
    Expired lots are not refused here: taking one stays the ledger's policy note (expired_lot)."""
    held = {c.lot_number: c for c in lots}
    for lot_number, quantity in chosen:
        lot = held.get(lot_number)
        if lot is None or lot.on_hand <= 0:
            return Broken("lot_not_usable", "lot_number", MSG_LOT_NOT_USABLE, lot=lot_number or "—")
        if quantity > lot.on_hand:
            return Broken("lot_short", "lot_number", MSG_LOT_SHORT, lot=lot_number or "—",
                          on_hand=lot.on_hand, asked=quantity)
    total = sum((q for _, q in chosen), Decimal(0))
    if total != wanted:
        return Broken("split_sum", "quantity", MSG_SPLIT_SUM, total=total, asked=wanted)
    return None


def over_ceiling(quantity: Decimal, ceiling: Decimal | None) -> bool:
    """Whether a dispensing goes over the item's protocol ceiling (the most one patient takes at
    once), which is recorded but needs a stated reason. One dispensing taken from several lots (a
    visit's line) is judged by its total, never lot by lot."""
    return ceiling is not None and quantity > ceiling


def over_ceiling_message(quantity: Decimal, unit: str, ceiling: Decimal, item_code: str) -> str:
    return f"{quantity} {unit} is over the protocol ceiling of {ceiling} for {item_code}"
