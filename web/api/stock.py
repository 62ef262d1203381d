"""Stock on hand and stock cards, within the caller's scope."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from stock import queries
from stock.errors import UnknownItem
from stock.masterdata import item_by_code
from stock.models import User
from stock.pseudonyms import maybe_pseudonym, patient_key
from web import audit, deps
from web.access import NotFound, current_user, facility_in_scope, scope_of
from web.api.schemas import MAX_OFFSET, CardLineOut, OnHandOut, StockCardOut

router = APIRouter(prefix="/stock", tags=["stock"])


def _item(db: Session, code: str):
    try:
        return item_by_code(db, code)
    except UnknownItem as exc:
        raise NotFound(str(exc), field="item") from None


@router.get("/on-hand", response_model=list[OnHandOut])
def on_hand(facility: str | None = Query(None, description="facility code; default: all in your scope"),
            item: str | None = Query(None, description="item code"),
            limit: int = Query(1000, ge=1, le=10000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
            user: User = Depends(current_user), db: Session = Depends(deps.read_db)) -> list[OnHandOut]:
    """Stock on hand per facility, item and lot (lots in stock only), soonest expiry first."""
    scope = scope_of(user)
    kwargs: dict = {}
    if facility:
        kwargs["facility_code"] = facility_in_scope(db, user, facility).code
    elif scope.kind == "facility":
        from stock.models import Facility

        kwargs["facility_code"] = db.get(Facility, scope.facility_id).code
    elif scope.kind == "region":
        kwargs["region"] = scope.region
    if item:
        kwargs["item_code"] = _item(db, item).code
    rows = queries.on_hand(db, **kwargs)[offset:offset + limit]
    return [OnHandOut(facility=r.facility_code, item=r.item_code, item_name=r.item_name, unit=r.unit,
                      lot=r.lot_number, expiry_date=r.expiry_date, on_hand=r.on_hand) for r in rows]


@router.get("/card/{facility}/{item}", response_model=StockCardOut)
def stock_card(request: Request, facility: str, item: str,
               since: datetime | None = Query(None, description="from this time (with zone); opening balance before it"),
               until: datetime | None = Query(None, description="before this time (with zone)"),
               user: User = Depends(current_user), db: Session = Depends(deps.db)) -> StockCardOut:
    """One facility and item's movements in the order applied, with the running balance; patients
    by pseudonym. A card that names patients is a patient-level read: audited with their number."""
    fac = facility_in_scope(db, user, facility)
    it = _item(db, item)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            from stock.errors import InvalidEntry

            raise InvalidEntry(f"{name} must carry a time zone, e.g. 2026-03-01T00:00:00Z", field=name)
    card = queries.stock_card(db, fac.code, it.code, since=since, until=until)
    key = patient_key(request.app.state.settings)
    lines = [CardLineOut(entry_id=x.entry_id, occurred_at=x.occurred_at, recorded_at=x.recorded_at, kind=x.kind,
                         lot=x.lot_number, quantity=x.quantity, effect=x.effect, balance=x.balance,
                         counterparty=x.counterparty, patient=maybe_pseudonym(x.health_card_id, key),
                         prescription_id=x.prescription_id, reason=x.reason, document_number=x.document_number,
                         recorded_by=x.recorded_by, reverses=x.reverses) for x in card.lines]
    patients = len({x.health_card_id for x in card.lines if x.health_card_id})
    if patients:
        audit.record(db, request, "stock_card_read", "stock_card", f"{fac.code}/{it.code}",
                     {"lines": len(lines), "patients": patients, "via": "api"}, facility_id=fac.id)
        db.commit()
    return StockCardOut(facility=card.facility_code, item=card.item_code, opening=card.opening,
                        closing=card.closing, lines=lines)
