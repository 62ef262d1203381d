"""Transfers: sending stock to another facility, and receiving what was sent here (what is
missing on arrival leaves the books at once as a loss with the stated reason)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from stock import rules
from stock.ledger import NewEntry
from stock.models import Facility, User
from web import deps
from web.access import STAFF, require_roles
from web.pharmacy import queries as q
from web.pharmacy.queries import EntryView
from web.pharmacy.shared import (
    MSG_MORE_THAN_SENT, MSG_NOT_IN_TRANSIT, MSG_NO_LOT, MSG_REQUIRED, acting, done_entry, done_redirect,
    find_item, form_id, fresh_id, local_today, parse_quantity, render_page, retried, said, submit, tr,
    utcnow,
)
from web.replenishment.pack_entry import in_base_units as in_packs

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


def _document_number(fac: Facility) -> str:
    return f"TR-{fac.code}-{datetime.now(timezone.utc):%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"


def _transfer_page(request: Request, db: Session, fac: Facility, values: dict, errors: dict,
                   done: EntryView | None = None, status: int = 200) -> Response:
    code = (values.get("item_code") or "").strip()
    return render_page(request, fac, "transfer_out", {
        "values": values, "errors": errors, "done": done, "destinations": q.destinations(db, fac),
        "items": q.held_items(db, fac, ""), "lots": q.fefo_lots(db, fac, code, local_today(request, fac)),
    }, status)


@router.get("/{facility}/transfer-out")
def transfer_out_form(request: Request, facility: str, done: str = "",
                      user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    fac = acting(db, user, facility)
    values = {"entry_id": fresh_id(), "document_number": _document_number(fac)}
    return _transfer_page(request, db, fac, values, {}, done_entry(db, fac, done))


@router.post("/{facility}/transfer-out")
def transfer_out_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                              db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = acting(db, user, facility)
    values["entry_id"] = form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    to = values.get("counterparty_code", "").strip()
    if not to:
        errors["counterparty_code"] = tr(request, MSG_REQUIRED)
    elif problem := rules.transfer_problem("transfer_out", fac.code, to):
        errors["counterparty_code"] = said(request, problem)
    item = find_item(request, db, values.get("item_code", ""), errors)
    quantity = in_packs(request, db, item, parse_quantity(request, values.get("quantity", ""), errors), values, errors)
    lot_number = values.get("lot_number", "").strip()
    if item is not None and not any(c.lot_number == lot_number
                                    for c in q.fefo_lots(db, fac, item.code, local_today(request, fac))):
        errors["lot_number"] = tr(request, MSG_NO_LOT)
    if errors:
        return _transfer_page(request, db, fac, values, errors, status=422)
    entry = NewEntry(entry_id=values["entry_id"], kind="transfer_out", facility_code=fac.code,
                     item_code=item.code, quantity=quantity, occurred_at=utcnow(), recorded_by=user.username,
                     lot_number=lot_number, counterparty_code=to,
                     document_number=values.get("document_number", "").strip() or None)
    outcome = submit(request, db, fac, entry)
    if outcome.errors:
        return _transfer_page(request, db, fac, values, outcome.errors, status=outcome.status)
    return done_redirect(fac, "transfer-out", entry.entry_id)


def _transfers_in_page(request: Request, db: Session, fac: Facility, *, errors: dict | None = None,
                       values: dict | None = None, done: EntryView | None = None, status: int = 200) -> Response:
    legs = q.in_transit(db, fac)
    expiries = {}
    for leg in legs:
        lot = q.lot_of(db, leg.item_code, leg.lot_number)
        expiries[leg.entry_id] = lot.expiry_date if lot else None
    return render_page(request, fac, "transfers_in", {
        "legs": legs, "expiries": expiries, "row_ids": {leg.entry_id: fresh_id() for leg in legs},
        "errors": errors or {}, "values": values or {}, "done": done}, status)


@router.get("/{facility}/transfers-in")
def transfers_in(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
                 db: Session = Depends(deps.read_db)):
    fac = acting(db, user, facility)
    return _transfers_in_page(request, db, fac, done=done_entry(db, fac, done))


@router.post("/{facility}/transfers-in")
def transfer_in_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                             db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = acting(db, user, facility)
    entry_id = form_id(values.get("entry_id"))
    out_id = values.get("out_entry_id", "").strip()
    stored = q.stored(db, entry_id)
    if stored is not None:
        outcome = retried(request, db, fac, stored)
        if outcome.already:
            return done_redirect(fac, "transfers-in", entry_id)
        return _transfers_in_page(request, db, fac, errors={out_id: outcome.errors["_form"]}, status=409)
    leg = next((leg for leg in q.in_transit(db, fac) if leg.entry_id == out_id), None)
    errors: dict[str, str] = {}
    if leg is None:
        return _transfers_in_page(request, db, fac, errors={out_id or "_form": tr(request, MSG_NOT_IN_TRANSIT)},
                                  values=values, status=409 if out_id else 422)
    quantity = parse_quantity(request, values.get("quantity", ""), errors)
    reason = values.get("reason", "").strip()
    if quantity is not None and quantity > leg.quantity:
        errors["quantity"] = tr(request, MSG_MORE_THAN_SENT, sent=leg.quantity)
    elif quantity is not None and (short := rules.short_arrival_problem(leg.quantity, quantity, reason)):
        errors["quantity"] = said(request, short)
    if errors:
        return _transfers_in_page(request, db, fac, errors={out_id: errors["quantity"]}, values=values, status=422)
    lot = q.lot_of(db, leg.item_code, leg.lot_number)
    # What was sent arrives in the books; what is missing leaves them at once as a loss on arrival.
    now = utcnow()
    entry = NewEntry(entry_id=entry_id, kind="transfer_in", facility_code=fac.code, item_code=leg.item_code,
                     quantity=leg.quantity, occurred_at=now, recorded_by=user.username, lot_number=leg.lot_number,
                     expiry_date=lot.expiry_date, counterparty_code=leg.facility_code,
                     document_number=leg.document_number)
    missing = leg.quantity - quantity
    also = (NewEntry(entry_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"short-on-arrival:{entry_id}")), kind="loss",
                     facility_code=fac.code, item_code=leg.item_code, quantity=missing, occurred_at=now,
                     recorded_by=user.username, lot_number=leg.lot_number,
                     reason=rules.short_arrival_reason(reason), document_number=leg.document_number),) if missing else ()
    outcome = submit(request, db, fac, entry, also=also,
                      detail={"transfer_out": leg.entry_id, "received": quantity, "missing": missing})
    if outcome.errors:
        message = next(iter(outcome.errors.values()))
        return _transfers_in_page(request, db, fac, errors={out_id: message}, values=values, status=outcome.status)
    return done_redirect(fac, "transfers-in", entry_id)


