"""Stock levels: maximum and minimum months of stock and the emergency order point.

Levels are set per facility kind and may be overridden for one facility and item. A kind with no
rule stored takes DEFAULT_LEVELS. An item's position against its levels is judged in months of
stock: on hand divided by average monthly consumption (stockout days adjusted, as requisitions
compute it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.models import FACILITY_KINDS, Facility
from stock.requisitions.models import StockLevelRule


@dataclass(frozen=True)
class Levels:
    max_months: Decimal
    min_months: Decimal
    emergency_months: Decimal


DEFAULT_LEVELS = {
    "warehouse": Levels(Decimal(6), Decimal(3), Decimal("1.5")),
    "hospital": Levels(Decimal(3), Decimal(1), Decimal("0.5")),
    "health_center": Levels(Decimal(3), Decimal(1), Decimal("0.5")),
    "pharmacy": Levels(Decimal(2), Decimal(1), Decimal("0.5")),
}
"""Months of stock when no rule is stored for a kind: stores hold more than the places they serve."""

STATUSES = ("emergency", "below_min", "ok", "above_max", "no_use")


def check_levels(levels: Levels) -> None:
    """Emergency point ≤ minimum ≤ maximum, maximum above zero, none negative."""
    if levels.max_months <= 0:
        raise InvalidEntry("the maximum months of stock must be above zero", field="max_months")
    if levels.min_months > levels.max_months:
        raise InvalidEntry("the minimum months of stock must not exceed the maximum", field="min_months")
    if levels.emergency_months < 0 or levels.emergency_months > levels.min_months:
        raise InvalidEntry("the emergency order point must lie between zero and the minimum", field="emergency_months")


class LevelBook:
    """The levels in force at one facility, item by item."""

    def __init__(self, base: Levels, overrides: dict[int, Levels]):
        self.base = base
        self.overrides = overrides

    def of(self, item_id: int) -> Levels:
        return self.overrides.get(item_id, self.base)


def kind_levels(session: Session, kind: str) -> Levels:
    rule = session.scalars(select(StockLevelRule).where(StockLevelRule.facility_kind == kind)).one_or_none()
    if rule is None:
        return DEFAULT_LEVELS[kind]
    return Levels(rule.max_months, rule.min_months, rule.emergency_months)


def level_book(session: Session, facility: Facility) -> LevelBook:
    overrides = {r.item_id: Levels(r.max_months, r.min_months, r.emergency_months)
                 for r in session.scalars(select(StockLevelRule).where(StockLevelRule.facility_id == facility.id))}
    return LevelBook(kind_levels(session, facility.kind), overrides)


def set_levels(session: Session, levels: Levels, *, by: str, kind: str | None = None,
               facility: Facility | None = None, item_id: int | None = None,
               now: datetime | None = None) -> StockLevelRule:
    """Store the levels of a facility kind, or of one facility and item (exactly one of the two)."""
    check_levels(levels)
    if (kind is None) == (facility is None) or (facility is not None and item_id is None):
        raise InvalidEntry("levels are set for a facility kind, or for one facility and one item", field="kind")
    if kind is not None and kind not in FACILITY_KINDS:
        raise InvalidEntry(f"kind {kind!r} is not one of {', '.join(FACILITY_KINDS)}", field="kind")
    stmt = select(StockLevelRule).where(
        StockLevelRule.facility_kind == kind if kind is not None
        else (StockLevelRule.facility_id == facility.id) & (StockLevelRule.item_id == item_id))
    rule = session.scalars(stmt).one_or_none()
    if rule is None:
        rule = StockLevelRule(facility_kind=kind, facility_id=facility.id if facility else None, item_id=item_id)
        session.add(rule)
    rule.max_months, rule.min_months, rule.emergency_months = levels.max_months, levels.min_months, levels.emergency_months
    rule.updated_at, rule.updated_by = now or datetime.now(timezone.utc), by
    session.flush()
    return rule


def status_of(on_hand: Decimal, amc: Decimal, levels: Levels) -> str:
    """Where stock stands against its levels; ``no_use`` when nothing was consumed to judge by."""
    if amc <= 0:
        return "no_use"
    months = on_hand / amc
    if months <= levels.emergency_months:
        return "emergency"
    if months < levels.min_months:
        return "below_min"
    if months > levels.max_months:
        return "above_max"
    return "ok"


__all__ = ["Levels", "DEFAULT_LEVELS", "STATUSES", "LevelBook", "check_levels", "kind_levels", "level_book",
           "set_levels", "status_of"]
