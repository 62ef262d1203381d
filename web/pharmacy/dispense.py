"""The single-item dispense form: one item, one lot, with the policy warnings that need a stated
reason. The counter's visit (web.pharmacy.visit) dispenses several items from several lots."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from stock.ledger import NewEntry
from stock.models import Facility, User
from web import deps
from web.access import STAFF, require_roles
from web.pharmacy import queries as q
from web.pharmacy.queries import EntryView
from web.pharmacy.scan import apply_scan, check_scanned_lot, scanned_pack
from web.pharmacy.shared import (
    MSG_NOT_HELD, MSG_NO_LOT, MSG_REASON_NEEDED, MSG_REQUIRED, WARN_FIELDS, acting, done_entry,
    done_redirect, find_item, form_id, fresh_id, local_today, parse_quantity, render_page, submit, tr,
    utcnow, warn_codes,
)

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


def dispense_page(request: Request, db: Session, fac: Facility, values: dict, *, errors: dict | None = None,
                   warnings: list | None = None, done: EntryView | None = None, already: bool = False,
                   status: int = 200, scanned: bool = False) -> Response:
    today = local_today(request, fac)
    code = (values.get("item_code") or "").strip()
    card = (values.get("health_card_id") or "").strip()
    warned = {}
    for note in warnings or []:
        warned.setdefault(WARN_FIELDS[note.code], []).append(note)
    return render_page(request, fac, "dispense", {
        "values": values, "errors": errors or {}, "warnings": warnings or [], "warned": warned,
        "done": done, "already": already, "scanned": scanned,
        "items": q.held_items(db, fac, ""), "lots": q.fefo_lots(db, fac, code, today),
        "prescriptions": q.open_prescriptions(db, card, code) if card and code else [],
    }, status)


@router.get("/{facility}/dispense")
def dispense_form(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
                  db: Session = Depends(deps.read_db)):
    fac = acting(db, user, facility)
    return dispense_page(request, db, fac, {"entry_id": fresh_id()}, done=done_entry(db, fac, done))


@router.post("/{facility}/dispense")
def dispense_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                          db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = acting(db, user, facility)
    values["entry_id"] = form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    # Without scripts a scanner's Enter submits the form: fill it from the scan, and record only
    # when the rest is there too.
    scanned = apply_scan(request, db, values, errors)
    if errors:
        return dispense_page(request, db, fac, values, errors=errors, status=422)
    card = values.get("health_card_id", "").strip()
    if scanned and not (card and values.get("quantity", "").strip()):
        check_scanned_lot(request, db, fac, values, errors)
        return dispense_page(request, db, fac, values, errors=errors, scanned=True)
    if not card:
        errors["health_card_id"] = tr(request, MSG_REQUIRED)
    item = find_item(request, db, values.get("item_code", ""), errors)
    serial = scanned_pack(request, values, item, errors) if item is not None else None
    quantity = parse_quantity(request, values.get("quantity", ""), errors)
    lot_number = values.get("lot_number", "").strip()
    if item is not None:
        held = q.fefo_lots(db, fac, item.code, local_today(request, fac))
        if not held:
            errors["lot_number"] = tr(request, MSG_NOT_HELD, code=item.code)
        elif not any(c.lot_number == lot_number for c in held):
            errors["lot_number"] = tr(request, MSG_NO_LOT)
    reason = values.get("reason", "").strip()
    if values.get("confirm") and not reason:
        errors["reason"] = tr(request, MSG_REASON_NEEDED)
    if errors:
        return dispense_page(request, db, fac, values, errors=errors, status=422)
    on_record = values.get("prescription_id", "").strip()
    paper = "" if on_record else values.get("paper_prescription", "").strip()
    entry = NewEntry(entry_id=values["entry_id"], kind="dispense", facility_code=fac.code, item_code=item.code,
                     quantity=quantity, occurred_at=utcnow(), recorded_by=user.username, lot_number=lot_number,
                     health_card_id=card, prescription_id=on_record or paper or None,
                     reason=reason or None, serial_number=serial)
    outcome = submit(request, db, fac, entry, warn=warn_codes(item, bool(paper)),
                      detail={"paper_prescription": True} if paper else None)
    if outcome.errors:
        return dispense_page(request, db, fac, values, errors=outcome.errors, status=outcome.status)
    if outcome.warnings:
        return dispense_page(request, db, fac, values, warnings=outcome.warnings)
    return done_redirect(fac, "dispense", entry.entry_id)


