"""The count sheet: blind counts of every lot on hand, posted together or not at all."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from stock import errors as domain
from stock.ledger import NewEntry, post
from stock.models import Facility, Item, Lot, User
from web import audit, deps
from web.access import STAFF, require_roles
from web.pharmacy import queries as q
from web.pharmacy.shared import (
    FAR_FROM_BOOK, MSG_FAR_FROM_BOOK, MSG_NO_COUNTS, acting, fresh_id, parse_quantity, render_page, tr,
    utcnow,
)

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


def _count_page(request: Request, db: Session, fac: Facility, values: dict, errors: dict,
                done: int | None = None, status: int = 200, results: list | None = None,
                confirm: bool = False) -> Response:
    return render_page(request, fac, "count", {"lines": q.count_sheet(db, fac), "values": values, "errors": errors,
                                         "done_count": done, "results": results or [], "confirm": confirm},
                 status)


@router.get("/{facility}/count")
def count_form(request: Request, facility: str, done: int | None = None, sheet: str = "",
               user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    fac = acting(db, user, facility)
    results = q.sheet_results(db, fac, sheet) if done else []
    return _count_page(request, db, fac, {"sheet_id": fresh_id()}, {}, done, results=results)


def _far_from_book(db: Session, fac: Facility, counted: list) -> list[int]:
    """Lots whose count is far from the books (FAR_FROM_BOOK)."""
    share, units = FAR_FROM_BOOK
    far = []
    for lot, find_item, quantity in counted:
        book = q.book_quantity(db, fac, lot.id)
        gap = abs(quantity - book)
        if gap > units and gap > share * book:
            far.append(lot.id)
    return far


@router.post("/{facility}/count")
def count_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                       db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """Post a count for every line filled in, all in one transaction, or none."""
    fac = acting(db, user, facility)
    sheet_id = values.get("sheet_id", "").strip()[:36] or fresh_id()
    values["sheet_id"] = sheet_id
    errors: dict[str, str] = {}
    counted: list[tuple[Lot, Item, Decimal]] = []
    for key, text in values.items():
        if not key.startswith("counted_") or not text.strip():
            continue
        try:
            lot_id = int(key.removeprefix("counted_"))
        except ValueError:
            continue
        found = q.lot_with_item(db, lot_id)
        if found is None:
            continue
        lot, item = found
        quantity = parse_quantity(request, text, errors, key, kind="count")
        if quantity is not None:
            counted.append((lot, item, quantity))
    if not counted and not errors:
        errors["_form"] = tr(request, MSG_NO_COUNTS)
    if errors:
        return _count_page(request, db, fac, values, errors, status=422)
    far = _far_from_book(db, fac, counted)
    if far and not values.get("confirm"):
        db.rollback()
        return _count_page(request, db, fac, values, {f"counted_{lot_id}": tr(request, MSG_FAR_FROM_BOOK)
                                                      for lot_id in far}, confirm=True)
    ids = [q.count_entry_id(sheet_id, lot.id) for lot, _, _ in counted]
    if q.any_stored(db, ids):
        db.rollback()  # the sheet was posted before: a retry
        return RedirectResponse(f"/pharmacy/{fac.code}/count?done={len(ids)}&sheet={sheet_id}", status_code=303)
    now = utcnow()
    entries = [NewEntry(entry_id=q.count_entry_id(sheet_id, lot.id), kind="count", facility_code=fac.code,
                        item_code=item.code, quantity=quantity, occurred_at=now, recorded_by=user.username,
                        lot_number=lot.lot_number)
               for lot, item, quantity in counted]
    try:
        posted = post(db, entries, now=now)
    except domain.DawaError as exc:
        db.rollback()
        return _count_page(request, db, fac, values, {"_form": exc.message}, status=422)
    for p in posted:
        audit.record(db, request, "ledger_post", "ledger_entry", p.entry.entry_id,
                     {"kind": "count", "quantity": p.entry.quantity, "book": p.entry.book_quantity,
                      "sheet": sheet_id}, facility_id=fac.id)
    db.commit()
    return RedirectResponse(f"/pharmacy/{fac.code}/count?done={len(posted)}&sheet={sheet_id}", status_code=303)


