"""A facility's figures for a period, computed from its ledger: what a requisition reports.

Per item: opening balance, received (receipts and transfers in), dispensed, issued (transfers out),
losses, adjustments (adjustments and counts, signed), closing balance, the days the item was out
of stock, and the average monthly consumption adjusted for stockout days.

A correction (a reversal) counts under the kind of the entry it reverses, so a reversed dispensing
lowers what was dispensed rather than showing as an adjustment. Months are calendar months in UTC,
as stock.queries counts them.

Consumption is dispensed plus issued: for a store, what it sends on is what it uses up. A month's
consumption is adjusted for the days the item was out: consumption × days ÷ (days − stockout days)
(the adjustment OpenLMIS makes). A month out of stock throughout says nothing about demand and is
left out of the average; so is a month before the item was ever held.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, func, select, type_coerce
from sqlalchemy.orm import Session, aliased

from stock.models import LedgerEntry
from stock.quantities import SCALE

COLUMNS = ("opening", "received", "dispensed", "issued", "losses", "adjustments", "closing")
_COLUMN_OF_KIND = {"receipt": "received", "transfer_in": "received", "dispense": "dispensed",
                   "transfer_out": "issued", "loss": "losses", "adjustment": "adjustments", "count": "adjustments"}
_SIGN = {"received": 1, "dispensed": -1, "issued": -1, "losses": -1, "adjustments": 1}
DAY_S = 86400


@dataclass(frozen=True)
class ItemFigures:
    item_id: int
    opening: Decimal
    received: Decimal
    dispensed: Decimal
    issued: Decimal
    losses: Decimal
    adjustments: Decimal
    closing: Decimal
    stockout_days: int
    amc: Decimal


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(timezone.utc)
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)


def add_months(start: datetime, n: int) -> datetime:
    index = start.year * 12 + start.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as its first instant and the first instant of the next month, in UTC."""
    year, month = (int(p) for p in period.split("-"))
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    return start, add_months(start, 1)


def _dec(milli: int) -> Decimal:
    q = Decimal(milli) / SCALE
    return q.quantize(Decimal(1)) if q == q.to_integral_value() else q.normalize()


def facility_figures(session: Session, facility_id: int, *, start: datetime, end: datetime,
                     amc_months: int) -> dict[int, ItemFigures]:
    """Figures of every item the facility has moved, over [start, end); the average monthly
    consumption over the ``amc_months`` whole months before the month ``end`` falls in (or ends)."""
    amc_end = month_start(end) if end != month_start(end) else end
    amc_start = add_months(amc_end, -amc_months)
    w0 = min(start, amc_start)
    e, target = LedgerEntry, aliased(LedgerEntry)
    raw = type_coerce(e.effect, BigInteger)
    openings = dict(session.execute(
        select(e.item_id, func.sum(raw)).where(e.facility_id == facility_id, e.occurred_at < w0)
        .group_by(e.item_id)).all())
    rows = session.execute(
        select(e.item_id, func.coalesce(target.kind, e.kind), raw, e.occurred_at)
        .outerjoin(target, target.entry_id == e.reverses)
        .where(e.facility_id == facility_id, e.occurred_at >= w0, e.occurred_at < end)
        .order_by(e.item_id, e.occurred_at, e.id)).all()
    by_item: dict[int, list] = defaultdict(list)
    for item_id, kind, effect, at in rows:
        by_item[item_id].append((kind, int(effect), at))
    months = [(add_months(amc_start, k), add_months(amc_start, k + 1)) for k in range(amc_months)]
    out = {}
    for item_id in sorted(set(openings) | set(by_item)):
        out[item_id] = _item(item_id, int(openings.get(item_id) or 0), by_item.get(item_id, []),
                             w0, start, end, months)
    return {k: v for k, v in out.items() if _moved(v)}


def _moved(f: ItemFigures) -> bool:
    return any(getattr(f, c) for c in COLUMNS) or f.amc > 0


def _item(item_id: int, balance: int, entries: list, w0: datetime, start: datetime, end: datetime,
          months: list[tuple[datetime, datetime]]) -> ItemFigures:
    """Walk one item's entries from ``w0`` (``balance`` on hand then) to ``end``."""
    totals = dict.fromkeys(COLUMNS, 0)
    used = [0] * len(months)
    out_s = [0.0] * (len(months) + 1)  # seconds at zero per AMC month, then in the period
    windows = months + [(start, end)]
    first_held = w0 if balance else None
    opening = balance

    def at_zero(t0: datetime, t1: datetime) -> None:
        for k, (m0, m1) in enumerate(windows):
            lo, hi = max(t0, m0), min(t1, m1)
            if hi > lo:
                out_s[k] += (hi - lo).total_seconds()

    cursor = w0
    for kind, effect, at in entries:
        if balance == 0:
            at_zero(cursor, at)
        cursor = at
        balance += effect
        if first_held is None and balance:
            first_held = at
        column = _COLUMN_OF_KIND[kind]
        if at < start:
            opening += effect
        else:
            totals[column] += effect * _SIGN[column]
        if column in ("dispensed", "issued"):
            for k, (m0, m1) in enumerate(months):
                if m0 <= at < m1:
                    used[k] -= effect
    if balance == 0:
        at_zero(cursor, end)
    totals["opening"] = opening
    totals["closing"] = opening + sum(totals[c] * _SIGN[c] for c in _SIGN)
    adjusted = []
    for k, (m0, m1) in enumerate(months):
        days = round((m1 - m0).total_seconds() / DAY_S)
        out_days = round(out_s[k] / DAY_S)
        if first_held is None or first_held >= m1 or out_days >= days:
            continue
        adjusted.append(Decimal(used[k]) * days / (days - out_days))
    amc_milli = (sum(adjusted) / len(adjusted)).quantize(Decimal(1), ROUND_HALF_UP) if adjusted else Decimal(0)
    return ItemFigures(item_id, *(_dec(totals[c]) for c in COLUMNS),
                       stockout_days=round(out_s[-1] / DAY_S), amc=_dec(int(amc_milli)))


__all__ = ["ItemFigures", "COLUMNS", "facility_figures", "period_bounds", "month_start", "add_months"]
