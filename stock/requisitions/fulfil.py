"""Fulfilment and proof of delivery: the only steps of a requisition that move stock, and they
move it through the ledger's write path (stock.ledger.post) like every other movement.

Fulfilment picks the supplier's lots first-expiry-first-out (unexpired lots by expiry date, those
without a date after them; expired lots are never shipped) up to each approved quantity and posts
one transfer_out per lot, carrying the requisition's waybill number as its document number and the
requesting facility as counterparty. What the store does not hold is not shipped: the
reconciliation shows it as approved and never shipped.

Proof of delivery is given line by line (lot by lot): the quantity counted on arrival, of which
damaged. The received quantity enters by a transfer_in with the same waybill number, so transfer
matching pairs it with its transfer_out; what arrived damaged then leaves by a loss with the
reason; what never arrived is a shortfall, left unmatched for detection to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.ledger import NewEntry, post
from stock.rules import fefo_key
from stock.models import Balance, Facility, Item, LedgerEntry, Lot
from stock.requisitions.errors import InvalidLine, WrongState
from stock.requisitions.flow import lines, record
from stock.requisitions.models import Requisition, RequisitionLine, RequisitionShipment
from stock.requisitions.notes import encode, part


@dataclass(frozen=True)
class Pick:
    lot: Lot
    quantity: Decimal


def fefo_pick(session: Session, facility_id: int, item_id: int, wanted: Decimal, today: date) -> list[Pick]:
    """Lots to take ``wanted`` from, first-expiry-first-out, as far as stock allows."""
    rows = session.execute(
        select(Lot, Balance.on_hand).join(Balance, Balance.lot_id == Lot.id)
        .where(Balance.facility_id == facility_id, Balance.item_id == item_id, Balance.on_hand > 0)
        .with_for_update(of=Balance)).all()
    usable = [(lot, held) for lot, held in rows if lot.expiry_date is None or lot.expiry_date >= today]
    usable.sort(key=lambda r: fefo_key(r[0].expiry_date, r[0].lot_number, today))
    picks, left = [], wanted
    for lot, held in usable:
        if left <= 0:
            break
        take = min(held, left)
        picks.append(Pick(lot, take))
        left -= take
    return picks


def waybill_of(req: Requisition) -> str:
    return "WB-" + req.number.removeprefix("REQ-")


def fulfil(session: Session, req: Requisition, *, by: str, now: datetime | None = None) -> list[RequisitionShipment]:
    """Ship an approved requisition: transfer_out entries at the supplier, FEFO, one per lot."""
    now = now or datetime.now(timezone.utc)
    if req.status != "approved":
        raise WrongState(f"requisition {req.number} is {req.status}; it cannot be shipped",
                         status=req.status, action="shipped")
    supplier, facility = session.get(Facility, req.supplier_id), session.get(Facility, req.facility_id)
    req.waybill = waybill_of(req)
    shipped = []
    for view in lines(session, req):
        if not view.line.approved:
            continue
        for k, pick in enumerate(fefo_pick(session, supplier.id, view.item.id, view.line.approved, now.date())):
            entry_id = f"rq{req.id}-{view.item.id}-{pick.lot.id}"
            post(session, NewEntry(
                entry_id=entry_id, kind="transfer_out", facility_code=supplier.code, item_code=view.item.code,
                quantity=pick.quantity, occurred_at=now, recorded_by=by, lot_number=pick.lot.lot_number,
                counterparty_code=facility.code, document_number=req.waybill,
                reason=f"requisition {req.number}"), now=now)
            shipment = RequisitionShipment(line_id=view.line.id, lot_id=pick.lot.id, quantity=pick.quantity,
                                           out_entry_id=entry_id)
            session.add(shipment)
            shipped.append(shipment)
    session.flush()
    record(session, req, "shipped", by, note=encode([part("waybill", waybill=req.waybill)]), now=now)
    return shipped


@dataclass(frozen=True)
class ShipmentView:
    shipment: RequisitionShipment
    line: RequisitionLine
    item: Item
    lot: Lot

    @property
    def shortfall(self) -> Decimal | None:
        s = self.shipment
        return None if s.received is None else s.quantity - s.received


def shipments(session: Session, req: Requisition) -> list[ShipmentView]:
    rows = session.execute(
        select(RequisitionShipment, RequisitionLine, Item, Lot)
        .join(RequisitionLine, RequisitionLine.id == RequisitionShipment.line_id)
        .join(Item, Item.id == RequisitionLine.item_id).join(Lot, Lot.id == RequisitionShipment.lot_id)
        .where(RequisitionLine.requisition_id == req.id).order_by(Item.code, Lot.expiry_date, Lot.lot_number))
    return [ShipmentView(*row) for row in rows]


@dataclass(frozen=True)
class Arrival:
    """What arrived of one shipped lot (by shipment id): counted, of which damaged."""

    shipment_id: int
    received: Decimal
    damaged: Decimal = Decimal(0)
    note: str | None = None


def receive(session: Session, req: Requisition, arrivals: list[Arrival], *, by: str,
            now: datetime | None = None) -> None:
    """Proof of delivery. A shipped lot not named in ``arrivals`` arrived in full and undamaged."""
    now = now or datetime.now(timezone.utc)
    if req.status != "shipped":
        raise WrongState(f"requisition {req.number} is {req.status}; it cannot be received",
                         status=req.status, action="received")
    facility, supplier = session.get(Facility, req.facility_id), session.get(Facility, req.supplier_id)
    if session.scalar(select(LedgerEntry.id).where(
            LedgerEntry.facility_id == facility.id, LedgerEntry.kind == "transfer_in",
            LedgerEntry.document_number == req.waybill).limit(1)):
        raise InvalidEntry(f"waybill {req.waybill} was already received as a transfer", field="waybill")
    views = {v.shipment.id: v for v in shipments(session, req)}
    given = {}
    for a in arrivals:
        view = views.get(a.shipment_id)
        if view is None:
            raise InvalidEntry(f"requisition {req.number} shipped no line {a.shipment_id}", field="shipment")
        code = view.item.code
        if a.received < 0 or a.damaged < 0:
            raise InvalidLine(f"{code}: quantities must not be negative", field="received", item_code=code)
        if a.received > view.shipment.quantity:
            raise InvalidLine(f"{code} lot {view.lot.lot_number}: {a.received} received is more than the "
                              f"{view.shipment.quantity} shipped", field="received", item_code=code)
        if a.damaged > a.received:
            raise InvalidLine(f"{code}: more damaged than received", field="damaged", item_code=code)
        given[a.shipment_id] = a
    notes = []
    for sid, view in views.items():
        a = given.get(sid) or Arrival(sid, view.shipment.quantity)
        s, item, lot = view.shipment, view.item, view.lot
        s.received, s.damaged, s.note = a.received, a.damaged, (a.note or "").strip() or None
        base = f"rq{req.id}-{item.id}-{lot.id}"
        if a.received > 0:
            post(session, NewEntry(
                entry_id=f"{base}-in", kind="transfer_in", facility_code=facility.code, item_code=item.code,
                quantity=a.received, occurred_at=now, recorded_by=by, lot_number=lot.lot_number,
                expiry_date=lot.expiry_date, counterparty_code=supplier.code, document_number=req.waybill),
                now=now)
        if a.damaged > 0:
            post(session, NewEntry(
                entry_id=f"{base}-dmg", kind="loss", facility_code=facility.code, item_code=item.code,
                quantity=a.damaged, occurred_at=now, recorded_by=by, lot_number=lot.lot_number,
                reason=f"damaged on delivery, waybill {req.waybill}" + (f": {s.note}" if s.note else ""),
                document_number=req.waybill), now=now)
        if a.received != s.quantity or a.damaged:
            notes.append(part("arrival", item=item.code, lot=lot.lot_number, received=a.received, shipped=s.quantity,
                              damaged=a.damaged))
    session.flush()
    record(session, req, "received", by, note=encode(notes), now=now)


__all__ = ["fefo_pick", "fulfil", "receive", "shipments", "ShipmentView", "Arrival", "Pick", "waybill_of"]
