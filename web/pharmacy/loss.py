"""Losses: expired, damaged, stolen, lost or recalled stock leaving the books."""

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
from web.pharmacy.shared import (
    LOSS_REASONS, MSG_LOSS_REASON, MSG_NO_LOT, acting, done_entry, done_redirect, find_item, form_id,
    fresh_id, local_today, parse_quantity, render_page, submit, tr, utcnow,
)

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


def _loss_page(request: Request, db: Session, fac: Facility, values: dict, errors: dict,
               done: EntryView | None = None, status: int = 200) -> Response:
    code = (values.get("item_code") or "").strip()
    return render_page(request, fac, "loss", {
        "values": values, "errors": errors, "done": done, "reasons": LOSS_REASONS,
        "items": q.held_items(db, fac, ""), "lots": q.fefo_lots(db, fac, code, local_today(request, fac)),
    }, status)


@router.get("/{facility}/loss")
def loss_form(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
              db: Session = Depends(deps.read_db)):
    fac = acting(db, user, facility)
    return _loss_page(request, db, fac, {"entry_id": fresh_id()}, {}, done_entry(db, fac, done))


@router.post("/{facility}/loss")
def loss_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                      db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = acting(db, user, facility)
    values["entry_id"] = form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    item = find_item(request, db, values.get("item_code", ""), errors)
    quantity = parse_quantity(request, values.get("quantity", ""), errors)
    reason = values.get("reason", "").strip()
    if reason not in LOSS_REASONS:
        errors["reason"] = tr(request, MSG_LOSS_REASON)
    lot_number = values.get("lot_number", "").strip()
    if item is not None and not any(c.lot_number == lot_number
                                    for c in q.fefo_lots(db, fac, item.code, local_today(request, fac))):
        errors["lot_number"] = tr(request, MSG_NO_LOT)
    if errors:
        return _loss_page(request, db, fac, values, errors, status=422)
    entry = NewEntry(entry_id=values["entry_id"], kind="loss", facility_code=fac.code, item_code=item.code,
                     quantity=quantity, occurred_at=utcnow(), recorded_by=user.username, lot_number=lot_number,
                     reason=reason)
    outcome = submit(request, db, fac, entry)
    if outcome.errors:
        return _loss_page(request, db, fac, values, outcome.errors, status=outcome.status)
    return done_redirect(fac, "loss", entry.entry_id)


