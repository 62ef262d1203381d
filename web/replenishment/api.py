"""/api/v1/requisitions: create, change, submit, approve or reject, fulfil and receive
requisitions, and reconcile them; the same rules and the same code as the pages (web.replenishment
.service → stock.requisitions), the same scope and error shape as the rest of /api/v1."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.models import Item, User
from stock.requisitions import flow
from stock.requisitions.fulfil import Arrival, fulfil, receive, shipments
from stock.requisitions.notes import decode
from stock.requisitions.packs import in_base_units, scanned
from stock.requisitions.reconcile import reconciliation
from web import deps
from web.access import NotFound, current_user, facility_in_scope, visible_facility_ids
from web.api import BEARER, ERRORS
from web.api.schemas import Qty
from web.replenishment.notes import note_text
from web.replenishment.service import Held, load, prepare_for, take_step, visible

router = APIRouter(prefix="/api/v1/requisitions", tags=["requisitions"], responses=ERRORS,
                   dependencies=[Depends(BEARER)])


class NewRequisition(BaseModel):
    facility_code: str = Field(max_length=32)
    period: str | None = Field(None, description="YYYY-MM, a month that has ended; empty for an emergency")
    emergency: bool = False


class LineIn(BaseModel):
    item_code: str = Field(max_length=32)
    quantity: Decimal = Field(ge=0, le=10**12, description="in base units, or in packs when `pack` is given")
    pack: str | None = Field(None, max_length=60, description="the pack counted in: its GTIN or its name")
    reason: str | None = Field(None, max_length=500)


class LinesIn(BaseModel):
    lines: list[LineIn] = Field(default_factory=list, max_length=2000)


class RejectIn(BaseModel):
    reason: str = Field(max_length=500)


class ArrivalIn(BaseModel):
    shipment_id: int = Field(ge=1, le=2**31 - 1)
    received: Decimal = Field(ge=0, le=10**12)
    damaged: Decimal = Field(Decimal(0), ge=0, le=10**12)
    note: str | None = Field(None, max_length=500)


class ArrivalsIn(BaseModel):
    lines: list[ArrivalIn] = Field(default_factory=list, max_length=2000)


class LineOut(BaseModel):
    item_code: str
    unit: str
    opening: Qty
    received: Qty
    dispensed: Qty
    issued: Qty
    losses: Qty
    adjustments: Qty
    closing: Qty
    stockout_days: int
    amc: Qty
    max_stock: Qty
    suggested: Qty
    requested: Qty
    request_reason: str | None
    approved: Qty | None
    approval_reason: str | None


class ShipmentOut(BaseModel):
    shipment_id: int
    item_code: str
    lot_number: str
    expiry_date: str | None
    quantity: Qty
    transfer_out: str
    received: Qty | None
    damaged: Qty | None
    note: str | None


class EventOut(BaseModel):
    at: datetime
    by: str
    action: str
    status: str
    note: str | None = Field(description="what the step changed, in the reader's language")
    note_parts: list[dict[str, str]] = Field(description="the same as data: each part's kind (quantity, arrival, "
                                                         "waybill, text) and its values")


class RequisitionOut(BaseModel):
    number: str
    facility_code: str
    supplier_code: str
    period: str
    emergency: bool
    status: str
    waybill: str | None
    lines: list[LineOut]
    shipments: list[ShipmentOut]
    timeline: list[EventOut]


class Summary(BaseModel):
    number: str
    facility_code: str
    supplier_code: str
    period: str
    emergency: bool
    status: str


class ReconOut(BaseModel):
    requisition: str
    period: str
    facility_code: str
    supplier_code: str
    item_code: str
    status: str
    requested: Qty
    approved: Qty | None
    shipped: Qty
    received: Qty | None
    damaged: Qty
    approved_not_shipped: Qty
    shipped_not_received: Qty


def out(lang: str, db: Session, held: Held) -> RequisitionOut:
    req = held.req
    return RequisitionOut(
        number=req.number, facility_code=held.facility.code, supplier_code=held.supplier.code, period=req.period,
        emergency=req.emergency, status=req.status, waybill=req.waybill,
        lines=[LineOut(item_code=v.item.code, unit=v.item.unit, **{c: getattr(v.line, c) for c in LineOut.model_fields
                                                                   if c not in ("item_code", "unit")})
               for v in flow.lines(db, req)],
        shipments=[ShipmentOut(shipment_id=v.shipment.id, item_code=v.item.code, lot_number=v.lot.lot_number,
                               expiry_date=v.lot.expiry_date.isoformat() if v.lot.expiry_date else None,
                               quantity=v.shipment.quantity, transfer_out=v.shipment.out_entry_id,
                               received=v.shipment.received, damaged=v.shipment.damaged, note=v.shipment.note)
                   for v in shipments(db, req)],
        timeline=[EventOut(at=e.at, by=e.by, action=e.action, status=e.status, note=note_text(lang, e.note),
                           note_parts=[{"kind": p.kind, **p.params} for p in decode(e.note)])
                  for e in flow.timeline(db, req)])


def _decisions(db: Session, body: LinesIn) -> list[flow.Decision]:
    items = {i.code: i for i in db.scalars(select(Item).where(Item.code.in_([ln.item_code for ln in body.lines])))}
    return [flow.Decision(ln.item_code, in_base_units(db, items[ln.item_code], ln.quantity, ln.pack)
                          if ln.pack and ln.item_code in items else ln.quantity, ln.reason) for ln in body.lines]


@router.get("/reconciliation", response_model=list[ReconOut])
def reconcile(facility: str | None = Query(None, max_length=32), period: str | None = Query(None, max_length=7),
              gaps_only: bool = False, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    """Requested, approved, shipped and received per line, of requisitions made by or supplied to
    the facilities in your scope (or the one named)."""
    ids = [facility_in_scope(db, user, facility).id] if facility else visible_facility_ids(db, user)
    return [ReconOut(requisition=r.number, period=r.period, facility_code=r.facility_code,
                     supplier_code=r.supplier_code, item_code=r.item_code, status=r.status, requested=r.requested,
                     approved=r.approved, shipped=r.shipped, received=r.received, damaged=r.damaged,
                     approved_not_shipped=r.approved_not_shipped, shipped_not_received=r.shipped_not_received)
            for r in reconciliation(db, ids, period=period, gaps_only=gaps_only)]


@router.get("", response_model=list[Summary])
def list_requisitions(facility: str | None = Query(None, max_length=32), status: str | None = Query(None, max_length=12),
                      user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    fac = facility_in_scope(db, user, facility) if facility else None
    return [Summary(number=r.number, facility_code=f, supplier_code=s, period=r.period, emergency=r.emergency,
                    status=r.status) for r, f, s in visible(db, user, facility=fac, status=status)]


@router.post("", response_model=RequisitionOut, status_code=201)
def create(request: Request, body: NewRequisition, user: User = Depends(current_user),
           db: Session = Depends(deps.db)):
    """Prepare a draft requisition from the facility's ledger (an emergency one: up to now)."""
    fac = facility_in_scope(db, user, body.facility_code)
    held = prepare_for(request, db, user, fac, body.period or "", body.emergency)
    db.commit()
    return out(request.state.lang, db, held)


@router.get("/{number}", response_model=RequisitionOut)
def show(request: Request, number: str, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    return out(request.state.lang, db, load(db, user, number))


@router.get("/{number}/fhir", response_class=JSONResponse,
            responses={200: {"content": {"application/fhir+json": {}},
                             "description": "a FHIR R5 Bundle of SupplyRequest, one per line"}})
def fhir(request: Request, number: str, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    """The requisition as FHIR R5 SupplyRequest resources (requested and approved quantities)."""
    from web.replenishment.fhir import supply_requests

    held = load(db, user, number)
    bundle = supply_requests(request.app.state.settings.fhir, held.req, held.facility, held.supplier,
                             flow.lines(db, held.req), held.req.created_by)
    return JSONResponse(bundle, media_type="application/fhir+json")


@router.post("/{number}/lines", response_model=RequisitionOut)
def change(request: Request, number: str, body: LinesIn, user: User = Depends(current_user),
           db: Session = Depends(deps.db)):
    """Change requested quantities of a draft; a quantity other than the suggested one needs a reason."""
    return out(request.state.lang, db, take_step(db, request, user, number, "change", lambda held: flow.change(
        db, held.req, _decisions(db, body), by=user.username), {"lines": len(body.lines)}))


@router.post("/{number}/submit", response_model=RequisitionOut)
def submit(request: Request, number: str, user: User = Depends(current_user), db: Session = Depends(deps.db)):
    return out(request.state.lang, db, take_step(db, request, user, number, "submit",
                             lambda held: flow.submit(db, held.req, by=user.username)))


@router.post("/{number}/approve", response_model=RequisitionOut)
def approve(request: Request, number: str, body: LinesIn, user: User = Depends(current_user),
            db: Session = Depends(deps.db)):
    """Approve every line as requested, except those listed (cut or raised, each with a reason)."""
    return out(request.state.lang, db, take_step(db, request, user, number, "approve", lambda held: flow.approve(
        db, held.req, _decisions(db, body), by=user.username), {"changed": len(body.lines)}))


@router.post("/{number}/reject", response_model=RequisitionOut)
def reject(request: Request, number: str, body: RejectIn, user: User = Depends(current_user),
           db: Session = Depends(deps.db)):
    return out(request.state.lang, db, take_step(db, request, user, number, "reject",
                             lambda held: flow.reject(db, held.req, reason=body.reason, by=user.username)))


@router.post("/{number}/fulfil", response_model=RequisitionOut)
def ship(request: Request, number: str, user: User = Depends(current_user), db: Session = Depends(deps.db)):
    """Ship an approved requisition from the supplier's stock, first-expiry-first-out."""
    return out(request.state.lang, db, take_step(db, request, user, number, "fulfil",
                             lambda held: fulfil(db, held.req, by=user.username)))


@router.post("/{number}/receive", response_model=RequisitionOut)
def arrive(request: Request, number: str, body: ArrivalsIn, user: User = Depends(current_user),
           db: Session = Depends(deps.db)):
    """Proof of delivery: lots not listed arrived in full and undamaged."""
    arrivals = [Arrival(a.shipment_id, a.received, a.damaged, a.note) for a in body.lines]
    return out(request.state.lang, db, take_step(db, request, user, number, "receive",
                             lambda held: receive(db, held.req, arrivals, by=user.username)))


packs_router = APIRouter(prefix="/api/v1/packs", tags=["packs"], responses=ERRORS, dependencies=[Depends(BEARER)])


class PackOut(BaseModel):
    item_code: str
    unit: str
    pack: str | None
    units_per_pack: Qty


@packs_router.get("/scan", response_model=PackOut)
def scan(code: str = Query(max_length=200, description="a scanned barcode or a GTIN"),
         user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    """The item and pack size a barcode names (master data: no facility in it)."""
    found = scanned(db, code)
    if found is None:
        raise NotFound("no item or pack has this GTIN", field="code")
    return PackOut(item_code=found.item.code, unit=found.item.unit, pack=found.pack.name if found.pack else None,
                   units_per_pack=found.pack.units if found.pack else Decimal(1))


__all__ = ["router", "packs_router"]
