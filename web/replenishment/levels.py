"""The stock levels page of a facility: each item's months of stock against its minimum, maximum
and emergency order point, with the items at emergency point, below minimum and above maximum
first; a manager overrides an item's levels here (the kind's levels are the default).

The months of stock are on hand now over the average monthly consumption with stockout days
adjusted (stock.requisitions.figures), the same figure a requisition is prepared from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.models import Facility, Item, User
from stock.quantities import parse_quantity
from stock.requisitions.figures import facility_figures, month_start, zone_of
from stock.requisitions.levels import Levels, level_book, set_levels, status_of
from web import audit, deps
from web.access import MANAGERS, facility_in_scope, require_roles
from web.templating import gettext, render, wants_fragment

router = APIRouter(include_in_schema=False)

MSG_LEVELS = "Emergency point ≤ minimum ≤ maximum, in months; the maximum above zero."
MSG_NUMBER = "Enter a number of months."
MSG_ITEM = "Choose an item this facility holds."


@dataclass(frozen=True)
class LevelRow:
    item: Item
    on_hand: Decimal
    amc: Decimal
    months: Decimal | None
    levels: Levels
    status: str
    overridden: bool


def level_rows(db: Session, fac: Facility, amc_months: int, now: datetime | None = None) -> list[LevelRow]:
    now = now or datetime.now(timezone.utc)
    zone = zone_of(fac)
    figures = facility_figures(db, fac.id, start=month_start(now, zone), end=now, amc_months=amc_months, zone=zone)
    book = level_book(db, fac)
    items = {i.id: i for i in db.scalars(select(Item).where(Item.id.in_(list(figures))))}
    order = {"emergency": 0, "below_min": 1, "above_max": 2, "ok": 3, "no_use": 4}
    rows = []
    for item_id, f in figures.items():
        levels = book.of(item_id)
        months = (f.closing / f.amc).quantize(Decimal("0.1")) if f.amc > 0 else None
        rows.append(LevelRow(items[item_id], f.closing, f.amc, months, levels, status_of(f.closing, f.amc, levels),
                             item_id in book.overrides))
    return sorted(rows, key=lambda r: (order[r.status], r.item.code))


def _page(request: Request, db: Session, fac: Facility, errors: dict | None = None, values: dict | None = None,
          status: int = 200):
    rows = level_rows(db, fac, request.app.state.settings.amc_months)
    return render(request, "replenishment/levels.html", {
        "facility": fac, "rows": rows, "base": level_book(db, fac).base, "errors": errors or {},
        "values": values or {}}, status_code=status)


@router.get("/stock/{facility}/levels")
def levels(request: Request, facility: str, user: User = Depends(require_roles(*MANAGERS)),
           db: Session = Depends(deps.read_db)):
    """The page; asked for by htmx (the stock dashboard), only the counts at emergency point,
    below minimum and above maximum."""
    fac = facility_in_scope(db, user, facility)
    if wants_fragment(request):
        rows = level_rows(db, fac, request.app.state.settings.amc_months)
        return render(request, "replenishment/_levels_summary.html", {"facility": fac, "rows": rows})
    return _page(request, db, fac)


@router.post("/stock/{facility}/levels")
def override(request: Request, facility: str, user: User = Depends(require_roles(*MANAGERS)),
             db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """Set one item's levels at this facility."""
    fac = facility_in_scope(db, user, facility)
    lang = request.state.lang
    item = db.scalars(select(Item).where(Item.code == values.get("item_code", "").strip())).one_or_none()
    errors = {} if item else {"item_code": gettext(lang, MSG_ITEM)}
    numbers = {}
    for name in ("max_months", "min_months", "emergency_months"):
        try:
            numbers[name] = parse_quantity(values.get(name, ""))
        except ValueError:
            errors[name] = gettext(lang, MSG_NUMBER)
    if not errors:
        try:
            set_levels(db, Levels(**numbers), by=user.username, facility=fac, item_id=item.id)
        except InvalidEntry as exc:
            errors[exc.field or "max_months"] = gettext(lang, MSG_LEVELS)
    if errors:
        db.rollback()
        return _page(request, db, fac, errors, values, status=422)
    audit.record(db, request, "levels.override", "item", item.code, {k: str(v) for k, v in numbers.items()},
                 facility_id=fac.id)
    db.commit()
    return RedirectResponse(f"/stock/{fac.code}/levels", status_code=303)


__all__ = ["router", "level_rows", "LevelRow"]
