"""Pages for facility managers: the stock dashboard of a facility and the stock card of an item.

The dashboard shows, for one facility in the user's scope, each item's stock on hand (by lot on
demand), average monthly consumption and the months of stock it covers (stock.queries
stock_positions), the items below the minimum months of stock (the setting the stock alerts use,
``alerts.low_stock_months``), stockouts, lots expiring within the alert windows
(``alerts.expiry_days``, 30/60/90 days) and a chart of an item's monthly dispensing. The stock
card lists an item's movements with the running balance over a chosen period. Every table can be
downloaded as CSV with the same rows as on screen.

web.access decides who sees what: managers and admins, and only facilities in their scope (a
facility outside it is refused before anything is read, on pages and downloads alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.masterdata import item_by_code
from stock.models import Facility, Item, User
from stock.queries import (OnHand, StockPosition, expiring, monthly_dispensed, on_hand, stock_card,
                           stock_positions, stockouts)
from web import audit, deps
from web.access import MANAGERS, MSG_UNKNOWN_ITEM, NotFound, facility_in_scope, require_roles, visible_facilities
from web.downloads import attachment
from web.interop import spreadsheets
from web.interop.spreadsheets import MEDIA_TYPES, Sheet, to_csv
from web.templating import gettext, render

router = APIRouter(include_in_schema=False)


TABLES = ("positions", "below-minimum", "stockouts", "expiring")
"""The dashboard tables that can be downloaded."""

CHART_MONTHS = 12

MSG_DATE = "Enter a date as YYYY-MM-DD."
MSG_PERIOD = "The end of the period comes before its start."
MSG_UNKNOWN_TABLE = "No such table."


def _zone(request: Request, fac: Facility) -> ZoneInfo:
    return ZoneInfo(fac.timezone or request.app.state.settings.default_timezone)


def _today(request: Request, fac: Facility) -> date:
    return request.app.state.settings.today(fac.timezone)


def _items(db: Session) -> dict[str, Item]:
    return {i.code: i for i in db.scalars(select(Item))}


@dataclass(frozen=True)
class ExpiringLot:
    lot: OnHand
    days_left: int
    window: int | None
    """The smallest alert window (in days) the lot is within; None once it has expired."""


@dataclass
class Dashboard:
    facility: Facility
    today: date
    min_months: Decimal
    windows: list[int]
    positions: list[StockPosition]
    below: list[StockPosition]
    stockouts: list[StockPosition]
    expiring: list[ExpiringLot]


def dashboard_data(request: Request, db: Session, fac: Facility) -> Dashboard:
    settings = request.app.state.settings
    today = _today(request, fac)
    min_months = Decimal(str(settings.alerts.low_stock_months))
    positions = stock_positions(db, today=today, months=settings.amc_months, facility_code=fac.code)
    below = [p for p in positions
             if not p.stocked_out and p.months_of_stock is not None and p.months_of_stock < min_months]
    windows = sorted(settings.alerts.expiry_days) or [90]
    lots = []
    for lot in expiring(db, within_days=windows[-1], today=today, facility_code=fac.code):
        days_left = (lot.expiry_date - today).days
        window = next((w for w in windows if days_left <= w), None) if days_left >= 0 else None
        lots.append(ExpiringLot(lot, days_left, window))
    return Dashboard(fac, today, min_months, windows, positions, below,
                     stockouts(db, today=today, facility_code=fac.code), lots)


# --- choosing a facility ---------------------------------------------------------------------

@router.get("/stock")
def stock_home(request: Request, facility: str = "", item: str = "",
               user: User = Depends(require_roles(*MANAGERS)), db: Session = Depends(deps.read_db)):
    """To the dashboard (or, with an item, the stock card) of the facility named, or of the
    user's one facility; a user with several picks one first. Alerts link here."""
    if not facility:
        mine = visible_facilities(db, user)
        if len(mine) != 1:
            return RedirectResponse("/stock/choose", status_code=303)
        facility = mine[0].code
    fac = facility_in_scope(db, user, facility.strip())
    target = f"/stock/{fac.code}" + (f"/card/{item.strip()}" if item.strip() else "")
    return RedirectResponse(target, status_code=303)


@router.get("/expiries")
def expiries(request: Request, user: User = Depends(require_roles(*MANAGERS)),
             db: Session = Depends(deps.read_db)):
    """The expiring lots of the dashboard."""
    mine = visible_facilities(db, user)
    if len(mine) != 1:
        return RedirectResponse("/stock/choose", status_code=303)
    return RedirectResponse(f"/stock/{mine[0].code}#expiring", status_code=303)


@router.get("/stock/choose")
def choose(request: Request, user: User = Depends(require_roles(*MANAGERS)),
           db: Session = Depends(deps.read_db)):
    return render(request, "manager/pick.html", {"facilities": visible_facilities(db, user)})


# --- dashboard -------------------------------------------------------------------------------

@router.get("/stock/{facility}")
def dashboard(request: Request, facility: str, chart: str = "",
              user: User = Depends(require_roles(*MANAGERS)), db: Session = Depends(deps.read_db)):
    fac = facility_in_scope(db, user, facility)
    data = dashboard_data(request, db, fac)
    items = _items(db)
    held = [p.item_code for p in data.positions]
    if chart not in held:
        # The item used most, so the chart shows something worth seeing.
        ranked = sorted(data.positions, key=lambda p: (-p.amc, p.item_code))
        chart = ranked[0].item_code if ranked else ""
    use = monthly_dispensed(db, fac.code, today=data.today, months=CHART_MONTHS, item_code=chart) if chart else []
    return render(request, "manager/dashboard.html", {
        "facility": fac, "d": data, "items": items, "chart_item": chart,
        "chart_labels": [u.month.strftime("%Y-%m") for u in use],
        "chart_values": [u.dispensed for u in use],
        "many_facilities": len(visible_facilities(db, user)) > 1,
    })


@router.get("/stock/{facility}/lots")
def lots(request: Request, facility: str, item: str = "",
         user: User = Depends(require_roles(*MANAGERS)), db: Session = Depends(deps.read_db)):
    """An item's lots on hand here (the htmx piece under the dashboard row)."""
    fac = facility_in_scope(db, user, facility)
    rows = on_hand(db, facility_code=fac.code, item_code=_item(db, item).code)
    return render(request, "manager/_lots.html", {"facility": fac, "lots": rows, "item_code": item})


def _item(db: Session, code: str) -> Item:
    from stock.errors import UnknownItem

    try:
        return item_by_code(db, code.strip())
    except UnknownItem:
        raise NotFound(MSG_UNKNOWN_ITEM, field="item", params={"item": code.strip()}) from None


def _csv(body: bytes, *name: str) -> Response:
    return Response(body, media_type=MEDIA_TYPES["csv"], headers=attachment(*name, ext="csv"))


def dashboard_sheet(data: Dashboard, items: dict[str, Item], table: str) -> Sheet:
    """A dashboard table as it is on screen, for download."""
    if table == "expiring":
        return Sheet("Expiring lots", ["item_code", "item_name", "unit", "lot_number", "expiry_date", "days_left",
                                       "window_days", "on_hand"],
                     [(e.lot.item_code, e.lot.item_name, e.lot.unit, e.lot.lot_number, e.lot.expiry_date,
                       e.days_left, e.window if e.window is not None else "expired", e.lot.on_hand)
                      for e in data.expiring])
    rows = {"positions": data.positions, "below-minimum": data.below, "stockouts": data.stockouts}[table]
    return Sheet("Stock positions", ["item_code", "item_name", "unit", "on_hand", "amc", "months_of_stock"],
                 [(p.item_code, items[p.item_code].name, items[p.item_code].unit, p.on_hand, p.amc,
                   p.months_of_stock) for p in rows])


@router.get("/stock/{facility}/export/{table}")
def export_table(request: Request, facility: str, table: str, item: str = "",
                 user: User = Depends(require_roles(*MANAGERS)), db: Session = Depends(deps.read_db)):
    """A dashboard table as CSV: positions, below-minimum, stockouts, expiring, or lots (of one
    item with ``item``, else of every item)."""
    fac = facility_in_scope(db, user, facility)
    today = _today(request, fac)
    if table == "lots":
        code = _item(db, item).code if item.strip() else None
        body, _ = spreadsheets.export(db, "on-hand", "csv", settings=request.app.state.settings,
                                      facility_code=fac.code, item_code=code)
        return _csv(body, "lots", fac.code, *([code] if code else []), str(today))
    if table not in TABLES:
        raise NotFound(gettext(request.state.lang, MSG_UNKNOWN_TABLE), field="table")
    sheet = dashboard_sheet(dashboard_data(request, db, fac), _items(db), table)
    return _csv(to_csv(sheet).encode("utf-8"), table, fac.code, str(today))


# --- stock card ------------------------------------------------------------------------------

def _period(request: Request, fac: Facility, since: str, until: str):
    """The period's bounds as instants (from the start of ``since`` to the end of ``until``, in
    the facility's zone), and the problems with what was typed."""
    zone, errors, bounds = _zone(request, fac), {}, {}
    for name, text in (("since", since), ("until", until)):
        text = text.strip()
        if not text:
            bounds[name] = None
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            errors[name] = gettext(request.state.lang, MSG_DATE)
            bounds[name] = None
            continue
        if name == "until":
            day += timedelta(days=1)
        bounds[name] = datetime.combine(day, time(0), tzinfo=zone)
    if bounds["since"] and bounds["until"] and bounds["until"] <= bounds["since"]:
        errors["until"] = gettext(request.state.lang, MSG_PERIOD)
        bounds["until"] = None
    return bounds["since"], bounds["until"], errors


@router.get("/stock/{facility}/card/{item}")
def card(request: Request, facility: str, item: str, since: str = "", until: str = "",
         user: User = Depends(require_roles(*MANAGERS)), db: Session = Depends(deps.read_db)):
    fac = facility_in_scope(db, user, facility)
    it = _item(db, item)
    t0, t1, errors = _period(request, fac, since, until)
    the_card = stock_card(db, fac.code, it.code, since=t0, until=t1)
    today = _today(request, fac)
    use = monthly_dispensed(db, fac.code, today=today, months=CHART_MONTHS, item_code=it.code)
    query = urlencode({k: v for k, v in (("since", since.strip()), ("until", until.strip())) if v and k not in errors})
    return render(request, "manager/card.html", {
        "facility": fac, "item": it, "card": the_card, "since": since, "until": until, "errors": errors,
        "zone": _zone(request, fac).key, "export_query": query,
        "chart_labels": [u.month.strftime("%Y-%m") for u in use], "chart_values": [u.dispensed for u in use],
    }, status_code=422 if errors else 200)


@router.get("/stock/{facility}/card/{item}/export")
def card_export(request: Request, facility: str, item: str, since: str = "", until: str = "",
                user: User = Depends(require_roles(*MANAGERS)), db: Session = Depends(deps.db)):
    """The stock card as CSV, over the same period as on screen (patients by pseudonym; audited)."""
    fac = facility_in_scope(db, user, facility)
    it = _item(db, item)
    t0, t1, errors = _period(request, fac, since, until)
    if errors:
        field, message = next(iter(errors.items()))
        from stock.errors import InvalidEntry

        raise InvalidEntry(message, field=field)
    body, rows = spreadsheets.export(db, "stock-card", "csv", facility_code=fac.code, item_code=it.code,
                                     since=t0, until=t1, settings=request.app.state.settings)
    audit.record(db, request, "export_read", "export", "stock-card.csv",
                 {"rows": rows, "facility": fac.code, "item": it.code, "via": "web"}, facility_id=fac.id)
    db.commit()
    return _csv(body, "stock-card", fac.code, it.code)


__all__ = ["router", "MANAGERS", "dashboard_data", "dashboard_sheet"]
