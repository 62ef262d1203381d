"""Receipt of stock: typed or scanned, counted in units or packs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from stock import rules
from stock.ledger import NewEntry
from stock.models import Facility, User
from web import deps
from web.access import STAFF, require_roles
from web.pharmacy.queries import EntryView
from web.pharmacy.scan import apply_scan, scanned_pack
from web.pharmacy.shared import (
    acting, done_entry, done_redirect, find_item, form_id, fresh_id, parse_date, parse_quantity,
    render_page, submit, utcnow,
)
from web.replenishment.pack_entry import in_base_units as in_packs

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


@router.get("/{facility}/receipt")
def receipt_form(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
                 db: Session = Depends(deps.read_db)):
    fac = acting(db, user, facility)
    return receipt_page(request, fac, {"entry_id": fresh_id()}, done=done_entry(db, fac, done))


def receipt_page(request: Request, fac: Facility, values: dict, *, errors: dict | None = None,
                  done: EntryView | None = None, scanned: bool = False, status: int = 200) -> Response:
    return render_page(request, fac, "receipt", {"values": values, "errors": errors or {}, "done": done,
                                           "scanned": scanned}, status)


@router.post("/{facility}/receipt")
def receipt_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                         db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = acting(db, user, facility)
    values["entry_id"] = form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    scanned = apply_scan(request, db, values, errors, packs=True)
    if errors:
        return receipt_page(request, fac, values, errors=errors, status=422)
    if scanned and not values.get("quantity", "").strip():
        return receipt_page(request, fac, values, scanned=True)
    item = find_item(request, db, values.get("item_code", ""), errors)
    serial = scanned_pack(request, values, item, errors) if item is not None else None
    quantity = in_packs(request, db, item, parse_quantity(request, values.get("quantity", ""), errors), values, errors)
    expiry = parse_date(request, values.get("expiry_date", ""), errors, "expiry_date")
    if errors:
        return receipt_page(request, fac, values, errors=errors, status=422)
    entry = NewEntry(entry_id=values["entry_id"], kind="receipt", facility_code=fac.code, item_code=item.code,
                     quantity=quantity, occurred_at=utcnow(), recorded_by=user.username,
                     lot_number=values.get("lot_number", "").strip(), expiry_date=expiry,
                     counterparty_code=values.get("counterparty_code", "").strip() or None,
                     document_number=values.get("document_number", "").strip() or None,
                     reason=rules.DESTRUCTION if values.get("for_destruction") else None,
                     serial_number=serial)
    outcome = submit(request, db, fac, entry)
    if outcome.errors:
        return receipt_page(request, fac, values, errors=outcome.errors, status=outcome.status)
    return done_redirect(fac, "receipt", entry.entry_id)


