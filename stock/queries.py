"""Reading stock: on hand, stock cards, expiries, consumption, stockouts.

Stock on hand is read from the balances table, never by summing the ledger, so it costs the same
however long the history grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session

from stock.masterdata import facility_by_code, item_by_code
from stock.models import Balance, Facility, Item, LedgerEntry, Lot, Patient
from stock.quantities import Quantity


@dataclass(frozen=True)
class OnHand:
    facility_code: str
    item_code: str
    item_name: str
    unit: str
    lot_number: str
    expiry_date: date | None
    on_hand: Decimal


def on_hand(session: Session, *, facility_code: str | None = None, item_code: str | None = None,
            region: str | None = None, include_zero: bool = False) -> list[OnHand]:
    stmt = (
        select(Facility.code, Item.code, Item.name, Item.unit, Lot.lot_number, Lot.expiry_date,
               Balance.on_hand)
        .join(Facility, Facility.id == Balance.facility_id)
        .join(Item, Item.id == Balance.item_id)
        .join(Lot, Lot.id == Balance.lot_id)
        .order_by(Facility.code, Item.code, Lot.expiry_date, Lot.lot_number)
    )
    if facility_code:
        stmt = stmt.where(Balance.facility_id == facility_by_code(session, facility_code).id)
    if item_code:
        stmt = stmt.where(Balance.item_id == item_by_code(session, item_code).id)
    if region:
        stmt = stmt.where(Facility.region == region)
    if not include_zero:
        stmt = stmt.where(Balance.on_hand > 0)
    return [OnHand(*row) for row in session.execute(stmt)]


@dataclass(frozen=True)
class CardLine:
    entry_id: str
    occurred_at: datetime
    recorded_at: datetime
    kind: str
    lot_number: str
    quantity: Decimal
    effect: Decimal
    balance: Decimal
    counterparty: str | None
    health_card_id: str | None
    prescription_id: str | None
    reason: str | None
    document_number: str | None
    recorded_by: str
    reverses: str | None


@dataclass(frozen=True)
class StockCard:
    facility_code: str
    item_code: str
    opening: Decimal
    lines: list[CardLine]

    @property
    def closing(self) -> Decimal:
        return self.lines[-1].balance if self.lines else self.opening


def stock_card(session: Session, facility_code: str, item_code: str, *,
               since: datetime | None = None, until: datetime | None = None) -> StockCard:
    """One facility and item's movements in the order they were applied, with a running balance
    over all its lots. ``since`` gives an opening balance of everything applied before it."""
    fac = facility_by_code(session, facility_code)
    item = item_by_code(session, item_code)
    base = and_(LedgerEntry.facility_id == fac.id, LedgerEntry.item_id == item.id)
    opening = Decimal(0)
    where = [base]
    if since is not None:
        opening = session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.effect), 0)).where(base, LedgerEntry.occurred_at < since)
        )
        where.append(LedgerEntry.occurred_at >= since)
    if until is not None:
        where.append(LedgerEntry.occurred_at < until)
    stmt = (
        select(LedgerEntry, Lot.lot_number, Patient.health_card_id)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
        .where(*where)
        .order_by(LedgerEntry.chain_seq)
    )
    running = opening
    lines = []
    for e, lot_number, card in session.execute(stmt):
        running += e.effect
        lines.append(CardLine(e.entry_id, e.occurred_at, e.recorded_at, e.kind, lot_number, e.quantity,
                              e.effect, running, e.counterparty, card, e.prescription_ref, e.reason,
                              e.document_number, e.recorded_by, e.reverses))
    return StockCard(fac.code, item.code, opening, lines)


def expiring(session: Session, *, within_days: int, today: date,
             facility_code: str | None = None) -> list[OnHand]:
    """Lots in stock that expire within ``within_days`` of ``today``, already expired ones included."""
    limit = today + timedelta(days=within_days)
    rows = on_hand(session, facility_code=facility_code)
    return sorted((r for r in rows if r.expiry_date is not None and r.expiry_date <= limit),
                  key=lambda r: (r.expiry_date, r.facility_code, r.item_code))


def _reversed_ids():
    return select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))


@dataclass(frozen=True)
class StockPosition:
    facility_code: str
    item_code: str
    on_hand: Decimal
    amc: Decimal
    months_of_stock: Decimal | None

    @property
    def stocked_out(self) -> bool:
        return self.on_hand == 0


def stock_positions(session: Session, *, today: date, months: int = 3,
                    facility_code: str | None = None) -> list[StockPosition]:
    """Per facility and item ever held: on hand, average monthly consumption over the last
    ``months`` full months (dispensing net of reversals), and months of stock it covers."""
    month_start = today.replace(day=1)
    start = month_start
    for _ in range(months):
        start = (start - timedelta(days=1)).replace(day=1)
    t0 = datetime(start.year, start.month, 1, tzinfo=timezone.utc)
    t1 = datetime(month_start.year, month_start.month, 1, tzinfo=timezone.utc)
    # SUM keeps the column's Quantity type (stated, not inferred), so both aggregates come back
    # as Decimals in base units through the subqueries on every backend.
    held = (
        select(Balance.facility_id, Balance.item_id,
               func.sum(Balance.on_hand, type_=Quantity).label("on_hand"))
        .group_by(Balance.facility_id, Balance.item_id)
    )
    used = (
        select(LedgerEntry.facility_id, LedgerEntry.item_id,
               func.sum(LedgerEntry.quantity, type_=Quantity).label("used"))
        .where(LedgerEntry.kind == "dispense", LedgerEntry.occurred_at >= t0,
               LedgerEntry.occurred_at < t1, LedgerEntry.entry_id.not_in(_reversed_ids()))
        .group_by(LedgerEntry.facility_id, LedgerEntry.item_id)
    )
    if facility_code:
        fid = facility_by_code(session, facility_code).id
        held = held.where(Balance.facility_id == fid)
        used = used.where(LedgerEntry.facility_id == fid)
    held_sq, used_sq = held.subquery(), used.subquery()
    stmt = (
        select(Facility.code, Item.code, held_sq.c.on_hand, used_sq.c.used)
        .select_from(held_sq)
        .join(Facility, Facility.id == held_sq.c.facility_id)
        .join(Item, Item.id == held_sq.c.item_id)
        .outerjoin(used_sq, and_(used_sq.c.facility_id == held_sq.c.facility_id,
                                 used_sq.c.item_id == held_sq.c.item_id))
        .order_by(Facility.code, Item.code)
    )
    out = []
    for fcode, icode, held, used in session.execute(stmt):
        on = held if held is not None else Decimal(0)
        amc = (used / months) if used else Decimal(0)
        mos = (on / amc).quantize(Decimal("0.1")) if amc > 0 else None
        out.append(StockPosition(fcode, icode, on, _plain(amc.quantize(Decimal("0.001"))), mos))
    return out


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without going to exponent form (``Decimal('10').normalize()`` is 1E+1)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def stockouts(session: Session, *, today: date, facility_code: str | None = None) -> list[StockPosition]:
    return [p for p in stock_positions(session, today=today, facility_code=facility_code) if p.stocked_out]


@dataclass(frozen=True)
class PatientDispensing:
    entry_id: str
    occurred_at: datetime
    facility_code: str
    item_code: str
    item_name: str
    lot_number: str
    quantity: Decimal
    prescription_id: str | None
    recorded_by: str
    reversed_by: str | None


def patient_dispensings(session: Session, health_card_id: str, *, facility_ids: list[int] | None = None,
                        since: datetime | None = None, limit: int = 500) -> list[PatientDispensing]:
    """A patient's dispensings across facilities, newest first, each with the entry that reversed
    it if one did. ``facility_ids`` keeps only those facilities' (a reader's scope)."""
    from sqlalchemy.orm import aliased

    reversal = aliased(LedgerEntry)
    stmt = (
        select(LedgerEntry.entry_id, LedgerEntry.occurred_at, Facility.code, Item.code, Item.name,
               Lot.lot_number, LedgerEntry.quantity, LedgerEntry.prescription_ref, LedgerEntry.recorded_by,
               reversal.entry_id)
        .join(Patient, Patient.id == LedgerEntry.patient_id)
        .join(Facility, Facility.id == LedgerEntry.facility_id)
        .join(Item, Item.id == LedgerEntry.item_id)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .outerjoin(reversal, reversal.reverses == LedgerEntry.entry_id)
        .where(Patient.health_card_id == health_card_id, LedgerEntry.kind == "dispense")
        .order_by(LedgerEntry.occurred_at.desc(), LedgerEntry.id.desc())
        .limit(limit)
    )
    if facility_ids is not None:
        stmt = stmt.where(LedgerEntry.facility_id.in_(facility_ids))
    if since is not None:
        stmt = stmt.where(LedgerEntry.occurred_at >= since)
    return [PatientDispensing(*row) for row in session.execute(stmt)]


@dataclass(frozen=True)
class MonthlyUse:
    item_code: str
    month: date
    """First day of the month (UTC months, as ``stock_positions`` counts them)."""
    dispensed: Decimal


def monthly_dispensed(session: Session, facility_code: str, *, today: date, months: int = 12,
                      item_code: str | None = None) -> list[MonthlyUse]:
    """Quantity dispensed per item and month at one facility, net of reversals (reversed
    dispensings do not count, as in ``stock_positions``), over the ``months`` months ending with
    the current one. Every item dispensed in the window gets every month, zeros included, in
    item then month order."""
    if months < 1:
        raise ValueError("months must be at least 1")
    starts = [today.replace(day=1)]
    for _ in range(months - 1):
        starts.insert(0, (starts[0] - timedelta(days=1)).replace(day=1))
    bounds = [datetime(m.year, m.month, 1, tzinfo=timezone.utc) for m in starts]
    last = starts[-1]
    end = (last + timedelta(days=32)).replace(day=1)
    t_end = datetime(end.year, end.month, 1, tzinfo=timezone.utc)
    fac = facility_by_code(session, facility_code)
    # The month as a CASE over its bounds: the same SQL on SQLite and PostgreSQL.
    month_no = case(*[(LedgerEntry.occurred_at < b, i - 1) for i, b in enumerate(bounds[1:], start=1)],
                    else_=len(bounds) - 1) if len(bounds) > 1 else literal(0)
    stmt = (
        select(Item.code, month_no.label("m"), func.sum(LedgerEntry.quantity, type_=Quantity))
        .join(Item, Item.id == LedgerEntry.item_id)
        .where(LedgerEntry.facility_id == fac.id, LedgerEntry.kind == "dispense",
               LedgerEntry.occurred_at >= bounds[0], LedgerEntry.occurred_at < t_end,
               LedgerEntry.entry_id.not_in(_reversed_ids()))
        .group_by(Item.code, month_no)
    )
    if item_code:
        stmt = stmt.where(LedgerEntry.item_id == item_by_code(session, item_code).id)
    used: dict[str, dict[int, Decimal]] = {}
    for code, m, qty in session.execute(stmt):
        used.setdefault(code, {})[int(m)] = qty if qty is not None else Decimal(0)
    return [MonthlyUse(code, start, _plain(used[code].get(i, Decimal(0))))
            for code in sorted(used) for i, start in enumerate(starts)]


__all__ = ["on_hand", "stock_card", "expiring", "stock_positions", "stockouts", "patient_dispensings",
           "monthly_dispensed", "MonthlyUse", "OnHand", "StockCard", "CardLine", "StockPosition", "PatientDispensing"]
