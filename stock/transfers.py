"""Matching the two legs of transfers.

A transfer leaves one facility as a ``transfer_out`` and arrives at the other as a ``transfer_in``,
often days later and sometimes short. Legs are paired by document_number when both carry it, and
otherwise by route, item, lot and the earliest arrival after the departure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from stock.models import Facility, Item, LedgerEntry, Lot


@dataclass(frozen=True)
class Leg:
    entry_id: str
    facility_code: str
    counterparty: str
    item_code: str
    lot_number: str
    quantity: Decimal
    occurred_at: datetime
    document_number: str | None


@dataclass(frozen=True)
class TransferPair:
    out: Leg
    into: Leg

    @property
    def document_number(self) -> str | None:
        return self.out.document_number or self.into.document_number

    @property
    def quantity_out(self) -> Decimal:
        return self.out.quantity

    @property
    def quantity_in(self) -> Decimal:
        return self.into.quantity

    @property
    def shortfall(self) -> Decimal:
        return self.out.quantity - self.into.quantity


@dataclass
class Matching:
    matched: list[TransferPair] = field(default_factory=list)
    unmatched_out: list[Leg] = field(default_factory=list)
    unmatched_in: list[Leg] = field(default_factory=list)


def _legs(session: Session, kind: str) -> list[Leg]:
    """Legs still standing: one undone by a correcting entry moved nothing, so it has no other
    leg to find, and leaving it in would report a corrected mistake as stock gone missing."""
    fac = aliased(Facility)
    reversed_ids = select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))
    stmt = (
        select(LedgerEntry.entry_id, fac.code, LedgerEntry.counterparty, Item.code, Lot.lot_number,
               LedgerEntry.quantity, LedgerEntry.occurred_at, LedgerEntry.document_number)
        .join(fac, fac.id == LedgerEntry.facility_id)
        .join(Item, Item.id == LedgerEntry.item_id)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .where(LedgerEntry.kind == kind, LedgerEntry.entry_id.not_in(reversed_ids))
        .order_by(LedgerEntry.occurred_at, LedgerEntry.id)
    )
    return [Leg(*row) for row in session.execute(stmt)]


def match_transfers(session: Session) -> Matching:
    outs, ins = _legs(session, "transfer_out"), _legs(session, "transfer_in")
    result = Matching()
    by_doc: dict[tuple, list[Leg]] = defaultdict(list)
    by_route: dict[tuple, list[Leg]] = defaultdict(list)
    for leg in ins:
        if leg.document_number:
            by_doc[(leg.counterparty, leg.facility_code, leg.document_number, leg.item_code,
                    leg.lot_number)].append(leg)
        by_route[(leg.counterparty, leg.facility_code, leg.item_code, leg.lot_number)].append(leg)
    used: set[str] = set()
    pending: list[Leg] = []
    for out in outs:
        key = (out.facility_code, out.counterparty, out.document_number, out.item_code, out.lot_number)
        cands = [c for c in by_doc.get(key, []) if c.entry_id not in used] if out.document_number else []
        if cands:
            used.add(cands[0].entry_id)
            result.matched.append(TransferPair(out, cands[0]))
        else:
            pending.append(out)
    for out in pending:
        route = (out.facility_code, out.counterparty, out.item_code, out.lot_number)
        cands = [c for c in by_route.get(route, [])
                 if c.entry_id not in used and c.occurred_at >= out.occurred_at
                 and not (c.document_number and out.document_number)]
        exact = [c for c in cands if c.quantity == out.quantity]
        pick = (exact or cands or [None])[0]
        if pick is None:
            result.unmatched_out.append(out)
        else:
            used.add(pick.entry_id)
            result.matched.append(TransferPair(out, pick))
    result.unmatched_in = [leg for leg in ins if leg.entry_id not in used]
    return result
