"""The lots of an item a facility holds, in the rule book's first-expiry-first-out order, and the
split of a quantity across them (stock.rules.allocation): what the counter proposes, what an
import naming no lot takes, read once here so that every caller agrees."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import rules
from stock.models import Balance, Facility, Item, Lot
from stock.rules.allocation import LotChoice, Take


def lots_on_hand(session: Session, facility_id: int, item_code: str, today: date) -> list[LotChoice]:
    """The item's lots with stock at the facility, FEFO: unexpired by expiry, undated after them,
    expired last. An unknown item has none."""
    code = (item_code or "").strip()
    if not code:
        return []
    stmt = (select(Lot.lot_number, Lot.expiry_date, Balance.on_hand)
            .join(Lot, Lot.id == Balance.lot_id).join(Item, Item.id == Balance.item_id)
            .where(Balance.facility_id == facility_id, Item.code == code, Balance.on_hand > 0))
    lots = [LotChoice(lot, expiry, Decimal(held), expiry is not None and expiry < today)
            for lot, expiry, held in session.execute(stmt)]
    return rules.fefo_order(lots, today)


def lots_at(session: Session, facility_code: str, item_code: str, today: date) -> list[LotChoice]:
    """lots_on_hand, the facility named by its code (none for an unknown facility)."""
    fid = session.scalar(select(Facility.id).where(Facility.code == facility_code))
    return [] if fid is None else lots_on_hand(session, fid, item_code, today)


def allocate(session: Session, facility_id: int, item_code: str, wanted: Decimal, today: date) -> list[Take]:
    """``wanted`` of the item split across the facility's usable lots, first expiry first; raises
    the rule book's Broken (field quantity) when its usable stock is short."""
    return rules.fefo_split(lots_on_hand(session, facility_id, item_code, today), wanted, today)
