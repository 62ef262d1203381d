"""What the pharmacy pages read: every query of web.pharmacy, kept out of the route functions.
Each function takes the session and the acting facility; none writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from stock.lots import lots_on_hand
from stock.models import Balance, Facility, Item, LedgerEntry, Lot, Patient, Prescription
from stock.queries import PatientDispensing, patient_dispensings
from stock.rules.allocation import LotChoice
from stock.transfers import Leg, match_transfers

PAGE_SIZE = 50
"""Entries per page of today's entries."""
HISTORY_DAYS = 90
"""How far back the counter shows a patient's dispensings."""


def fefo_lots(db: Session, fac: Facility, item_code: str, today: date) -> list[LotChoice]:
    """The lots of an item on hand here, first-expiry-first-out (stock.lots, the rule book's order):
    unexpired ones by expiry (those without a date after them), then expired ones."""
    return lots_on_hand(db, fac.id, item_code, today)


def item_by_code(db: Session, code: str) -> Item | None:
    return db.scalars(select(Item).where(Item.code == code)).one_or_none()


def items_by_code(db: Session, codes: set[str]) -> dict[str, Item]:
    if not codes:
        return {}
    return {i.code: i for i in db.scalars(select(Item).where(Item.code.in_(codes)))}


def held_items(db: Session, fac: Facility, q: str = "", *, everything: bool = False, limit: int = 20) -> list[Item]:
    """Items matching ``q`` by code or name: those the facility holds, or the whole list."""
    stmt = select(Item).order_by(Item.code).limit(limit)
    if not everything:
        held = select(Balance.item_id).where(Balance.facility_id == fac.id, Balance.on_hand > 0)
        stmt = stmt.where(Item.id.in_(held))
    q = (q or "").strip()
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(Item.code.ilike(like), Item.name.ilike(like)))
    return list(db.scalars(stmt))


@dataclass(frozen=True)
class OpenPrescription:
    code: str
    quantity: Decimal
    dispensed: Decimal
    issued_on: date
    prescriber: str

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.dispensed


def open_prescriptions(db: Session, health_card_id: str, item_code: str) -> list[OpenPrescription]:
    """A patient's prescriptions for an item with something left to dispense, newest first."""
    if not health_card_id or not item_code:
        return []
    reversed_ids = select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))
    dispensed = (select(func.coalesce(func.sum(LedgerEntry.quantity), 0))
                 .where(LedgerEntry.prescription_ref == Prescription.code, LedgerEntry.kind == "dispense",
                        LedgerEntry.entry_id.not_in(reversed_ids))
                 .correlate(Prescription).scalar_subquery())
    stmt = (select(Prescription.code, Prescription.quantity, dispensed, Prescription.issued_on,
                   Prescription.prescriber)
            .join(Patient, Patient.id == Prescription.patient_id)
            .join(Item, Item.id == Prescription.item_id)
            .where(Patient.health_card_id == health_card_id, Item.code == item_code)
            .order_by(Prescription.issued_on.desc(), Prescription.code))
    found = [OpenPrescription(code, Decimal(qty), Decimal(done), issued, prescriber)
             for code, qty, done, issued, prescriber in db.execute(stmt)]
    return [p for p in found if p.remaining > 0]


def stored(db: Session, entry_id: str) -> LedgerEntry | None:
    return db.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).one_or_none()


def any_stored(db: Session, entry_ids: list[str]) -> bool:
    return db.scalars(select(LedgerEntry.id).where(LedgerEntry.entry_id.in_(entry_ids))).first() is not None


def stored_lines(db: Session, fac: Facility, entry_ids: list[str]) -> list[tuple[str, str, str, Decimal]]:
    """(entry id, item code, lot number, quantity) of these entries of the facility, in their order."""
    if not entry_ids:
        return []
    stmt = (select(LedgerEntry.entry_id, Item.code, Lot.lot_number, LedgerEntry.quantity)
            .join(Item, Item.id == LedgerEntry.item_id).join(Lot, Lot.id == LedgerEntry.lot_id)
            .where(LedgerEntry.facility_id == fac.id, LedgerEntry.entry_id.in_(entry_ids)))
    found = {row[0]: tuple(row) for row in db.execute(stmt)}
    return [found[i] for i in entry_ids if i in found]


def recent_dispensings(db: Session, card: str, facility_ids: list[int] | None, now: datetime,
                       days: int = HISTORY_DAYS) -> list[PatientDispensing]:
    """The patient's dispensings of the last ``days`` at the facilities given (None: all), newest first."""
    return patient_dispensings(db, card, facility_ids=facility_ids, since=now - timedelta(days=days), limit=200)


@dataclass(frozen=True)
class EntryView:
    entry_id: str
    kind: str
    item_code: str
    item_name: str
    lot_number: str
    quantity: Decimal
    effect: Decimal
    recorded_at: datetime
    recorded_by: str
    health_card_id: str | None
    counterparty: str | None
    reason: str | None
    reverses: str | None
    reversed_by: str | None = None


def entries(db: Session, fac: Facility, *, since: datetime | None = None, entry_id: str | None = None,
            by: str | None = None, page: int = 1) -> list[EntryView]:
    """The facility's entries, newest first: one (``entry_id``), or those recorded ``since``
    (by ``by`` only, when given), a page of PAGE_SIZE at a time."""
    reversal = aliased(LedgerEntry)
    stmt = (select(LedgerEntry.entry_id, LedgerEntry.kind, Item.code, Item.name, Lot.lot_number,
                   LedgerEntry.quantity, LedgerEntry.effect, LedgerEntry.recorded_at, LedgerEntry.recorded_by,
                   Patient.health_card_id, LedgerEntry.counterparty, LedgerEntry.reason, LedgerEntry.reverses,
                   reversal.entry_id)
            .join(Item, Item.id == LedgerEntry.item_id)
            .join(Lot, Lot.id == LedgerEntry.lot_id)
            .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
            .outerjoin(reversal, reversal.reverses == LedgerEntry.entry_id)
            .where(LedgerEntry.facility_id == fac.id)
            .order_by(LedgerEntry.chain_seq.desc()))
    if since is not None:
        stmt = stmt.where(LedgerEntry.recorded_at >= since)
    if by is not None:
        stmt = stmt.where(LedgerEntry.recorded_by == by)
    if entry_id is not None:
        stmt = stmt.where(LedgerEntry.entry_id == entry_id)
    else:
        stmt = stmt.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)
    return [EntryView(*row) for row in db.execute(stmt)]


def destinations(db: Session, fac: Facility) -> list[tuple[str, str]]:
    """Where a transfer may go: any other facility, as (code, label) choices."""
    others = db.scalars(select(Facility).where(Facility.id != fac.id).order_by(Facility.code))
    return [(f.code, f"{f.name} ({f.code})") for f in others]


def lot_of(db: Session, item_code: str, lot_number: str) -> Lot | None:
    return db.scalars(select(Lot).join(Item, Item.id == Lot.item_id)
                      .where(Item.code == item_code, Lot.lot_number == lot_number)).one_or_none()


def in_transit(db: Session, fac: Facility) -> list[Leg]:
    """Transfers sent to this facility that have not arrived (stock.transfers' unmatched legs)."""
    return [leg for leg in match_transfers(db).unmatched_out if leg.counterparty == fac.code]


def book_quantity(db: Session, fac: Facility, lot_id: int) -> Decimal:
    held = db.scalar(select(Balance.on_hand).where(Balance.facility_id == fac.id, Balance.lot_id == lot_id))
    return held or Decimal(0)


def lot_with_item(db: Session, lot_id: int) -> tuple[Lot, Item] | None:
    lot = db.get(Lot, lot_id)
    return None if lot is None else (lot, db.get(Item, lot.item_id))


@dataclass(frozen=True)
class SheetLine:
    lot_id: int
    item_code: str
    item_name: str
    unit: str
    lot_number: str
    expiry_date: date | None
    on_hand: Decimal


def count_sheet(db: Session, fac: Facility) -> list[SheetLine]:
    """Every item and lot on hand at the facility, by item then expiry."""
    stmt = (select(Lot.id, Item.code, Item.name, Item.unit, Lot.lot_number, Lot.expiry_date, Balance.on_hand)
            .join(Item, Item.id == Balance.item_id).join(Lot, Lot.id == Balance.lot_id)
            .where(Balance.facility_id == fac.id, Balance.on_hand > 0))
    lines = [SheetLine(*row) for row in db.execute(stmt)]
    return sorted(lines, key=lambda s: (s.item_code, s.expiry_date is None, s.expiry_date or date.max,
                                        s.lot_number))


def count_entry_id(sheet_id: str, lot_id: int) -> str:
    return f"count-{sheet_id}-{lot_id}"


@dataclass(frozen=True)
class CountResult:
    item_code: str
    lot_number: str
    counted: Decimal
    book: Decimal

    @property
    def variance(self) -> Decimal:
        return self.counted - self.book


def sheet_results(db: Session, fac: Facility, sheet_id: str) -> list[CountResult]:
    """What a posted count sheet found against the books, shown once the counts are in."""
    if not sheet_id:
        return []
    stmt = (select(Item.code, Lot.lot_number, LedgerEntry.quantity, LedgerEntry.book_quantity)
            .join(Item, Item.id == LedgerEntry.item_id).join(Lot, Lot.id == LedgerEntry.lot_id)
            .where(LedgerEntry.facility_id == fac.id, LedgerEntry.kind == "count",
                   LedgerEntry.entry_id.like(count_entry_id(sheet_id[:36], 0).removesuffix("0") + "%"))
            .order_by(Item.code, Lot.lot_number))
    return [CountResult(code, lot, counted, book or Decimal(0)) for code, lot, counted, book in db.execute(stmt)]
