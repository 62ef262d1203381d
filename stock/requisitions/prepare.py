"""Preparing a requisition from the ledger: every figure computed, nothing typed twice.

A regular requisition covers one whole month that has ended; an emergency one is prepared between
periods, from the start of the current month to now, and asks only for items at or below their
minimum. Months are the facility's own (its time zone, else DAWA_DEFAULT_TIMEZONE). The suggested quantity brings stock up to the maximum: AMC × maximum months − closing
balance, rounded up to whole base units, never below zero. It starts as the requested quantity.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.models import Facility
from stock.requisitions.errors import RequisitionExists
from stock.requisitions.figures import (ItemFigures, facility_figures, figures_of, month_start, period_bounds,
                                        period_label, zone_of)
from stock.requisitions.flow import record
from stock.requisitions.levels import Levels, level_book, status_of
from stock.requisitions.models import Requisition, RequisitionLine

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def suggested_quantity(figures: ItemFigures, levels: Levels) -> tuple[Decimal, Decimal]:
    """(maximum stock, suggested quantity) for one line."""
    max_stock = (figures.amc * levels.max_months).quantize(Decimal(1), ROUND_CEILING)
    return max_stock, max(Decimal(0), max_stock - figures.closing).quantize(Decimal(1), ROUND_CEILING)


def supplier_of(facility: Facility, session: Session) -> Facility:
    if facility.parent_id is None:
        raise InvalidEntry(f"facility {facility.code} has no supplying store to request from", field="facility")
    return session.get(Facility, facility.parent_id)


def _regular(session: Session, facility: Facility, period: str | None, now: datetime) -> tuple[datetime, datetime, str]:
    if not period or not PERIOD.match(period):
        raise InvalidEntry("the period must be a month written YYYY-MM", field="period")
    start, end = period_bounds(period, zone_of(facility))
    if end > now:
        raise InvalidEntry(f"the period {period} has not ended yet; an emergency requisition can be made now",
                           field="period")
    if session.scalar(select(Requisition.id).where(Requisition.facility_id == facility.id,
                                                   Requisition.period == period, ~Requisition.emergency)):
        raise RequisitionExists(f"{facility.code} already has a requisition for {period}")
    return start, end, f"REQ-{facility.code}-{period}"


def prepare(session: Session, facility: Facility, *, by: str, period: str | None = None,
            emergency: bool = False, amc_months: int = 3, now: datetime | None = None) -> Requisition:
    """A draft requisition of ``facility`` for ``period`` (YYYY-MM, a month that has ended), or an
    emergency one up to ``now``."""
    now = now or datetime.now(timezone.utc)
    supplier = supplier_of(facility, session)
    zone = zone_of(facility)
    if emergency:
        start, end = month_start(now, zone), now
        period = period_label(now, zone)
        n = session.scalar(select(func.count()).select_from(Requisition).where(
            Requisition.facility_id == facility.id, Requisition.period == period, Requisition.emergency)) or 0
        number = f"REQ-{facility.code}-{period}-E{n + 1}"
    else:
        start, end, number = _regular(session, facility, period, now)
    figures = facility_figures(session, facility.id, start=start, end=end, amc_months=amc_months, zone=zone)
    return _create(session, facility, supplier, number, period, emergency, figures, by=by, now=now)


def prepare_all(session: Session, facilities: list[Facility], *, by: str, period: str, amc_months: int = 3,
                now: datetime | None = None) -> list[Requisition]:
    """The regular requisitions of many facilities for one period (a store preparing those of the
    facilities it supplies), their figures read from the ledger in one pass per time zone."""
    now = now or datetime.now(timezone.utc)
    heads = [(fac, supplier_of(fac, session), *_regular(session, fac, period, now)) for fac in facilities]
    zones: dict[str, list[Facility]] = {}
    for fac in facilities:
        zones.setdefault(zone_of(fac).key, []).append(fac)
    figures: dict[int, dict[int, ItemFigures]] = {}
    for members in zones.values():
        zone = zone_of(members[0])
        start, end = period_bounds(period, zone)
        figures |= figures_of(session, [fac.id for fac in members], start=start, end=end, amc_months=amc_months,
                              zone=zone)
    return [_create(session, fac, supplier, number, period, False, figures[fac.id], by=by, now=now)
            for fac, supplier, _, _, number in heads]


def _create(session: Session, facility: Facility, supplier: Facility, number: str, period: str, emergency: bool,
            figures: dict[int, ItemFigures], *, by: str, now: datetime) -> Requisition:
    book = level_book(session, facility)
    req = Requisition(number=number, facility_id=facility.id, supplier_id=supplier.id, period=period,
                      emergency=emergency, status="draft", created_at=now, created_by=by)
    session.add(req)
    session.flush()
    rows = []
    for item_id, f in figures.items():
        levels = book.of(item_id)
        if emergency and status_of(f.closing, f.amc, levels) not in ("emergency", "below_min"):
            continue
        max_stock, suggested = suggested_quantity(f, levels)
        rows.append(dict(
            requisition_id=req.id, item_id=item_id, opening=f.opening, received=f.received,
            dispensed=f.dispensed, issued=f.issued, losses=f.losses, adjustments=f.adjustments,
            closing=f.closing, stockout_days=f.stockout_days, amc=f.amc, max_stock=max_stock,
            suggested=suggested, requested=suggested, request_reason=None, approved=None, approval_reason=None))
    if rows:
        session.execute(insert(RequisitionLine), rows)
    record(session, req, "prepared", by, now=now)
    return req


__all__ = ["prepare", "prepare_all", "suggested_quantity", "supplier_of", "PERIOD"]
