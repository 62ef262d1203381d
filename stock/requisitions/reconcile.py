"""Reconciliation: requested, approved, shipped and received per requisition line, and the gaps.

``approved_not_shipped`` is what the supplier approved and never sent; ``shipped_not_received`` is
what left the store and did not arrive (counted only once the facility has given its proof of
delivery; before that it is in transit). One query computes every line of the facilities asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from stock.models import Facility, Item
from stock.quantities import Quantity
from stock.requisitions.models import Requisition, RequisitionLine, RequisitionShipment

HEADER = ["requisition", "period", "emergency", "status", "facility", "supplier", "item_code", "item_name",
          "unit", "requested", "approved", "shipped", "received", "damaged", "approved_not_shipped",
          "shipped_not_received"]


@dataclass(frozen=True)
class ReconLine:
    number: str
    period: str
    emergency: bool
    status: str
    facility_code: str
    supplier_code: str
    item_code: str
    item_name: str
    unit: str
    requested: Decimal
    approved: Decimal | None
    shipped: Decimal
    received: Decimal | None
    damaged: Decimal

    @property
    def approved_not_shipped(self) -> Decimal:
        if self.status not in ("shipped", "received") or self.approved is None:
            return Decimal(0)
        return max(Decimal(0), self.approved - self.shipped)

    @property
    def shipped_not_received(self) -> Decimal:
        if self.status != "received" or self.received is None:
            return Decimal(0)
        return self.shipped - self.received

    @property
    def gap(self) -> bool:
        return bool(self.approved_not_shipped or self.shipped_not_received or self.damaged)

    def row(self) -> list:
        return [self.number, self.period, self.emergency, self.status, self.facility_code, self.supplier_code,
                self.item_code, self.item_name, self.unit, self.requested, self.approved, self.shipped,
                self.received, self.damaged, self.approved_not_shipped, self.shipped_not_received]


def reconciliation(session: Session, facility_ids: list[int] | None, *, period: str | None = None,
                   gaps_only: bool = False, limit: int | None = None, offset: int = 0) -> list[ReconLine]:
    """Lines of the requisitions made by, or supplied by, ``facility_ids`` (None: every facility),
    newest period first; ``limit`` and ``offset`` page through them (after ``gaps_only``)."""
    s = RequisitionShipment
    sums = (select(s.line_id, func.sum(s.quantity, type_=Quantity).label("shipped"),
                   func.sum(s.received, type_=Quantity).label("received"),
                   func.sum(s.damaged, type_=Quantity).label("damaged"))
            .group_by(s.line_id).subquery())
    fac, sup, r, ln = aliased(Facility), aliased(Facility), Requisition, RequisitionLine
    stmt = (select(r.number, r.period, r.emergency, r.status, fac.code, sup.code, Item.code, Item.name, Item.unit,
                   ln.requested, ln.approved, sums.c.shipped, sums.c.received, sums.c.damaged)
            .join(ln, ln.requisition_id == r.id).join(Item, Item.id == ln.item_id)
            .join(fac, fac.id == r.facility_id).join(sup, sup.id == r.supplier_id)
            .outerjoin(sums, sums.c.line_id == ln.id)
            .where(r.status != "draft")
            .order_by(r.period.desc(), r.number, Item.code))
    if facility_ids is not None:
        stmt = stmt.where(r.facility_id.in_(facility_ids) | r.supplier_id.in_(facility_ids))
    if period:
        stmt = stmt.where(r.period == period)
    if not gaps_only and limit is not None:
        stmt, limit, offset = stmt.limit(limit).offset(offset), None, 0  # paged by the database
    out = []
    for row in session.execute(stmt):
        *head, shipped, received, damaged = row
        status = head[3]
        out.append(ReconLine(*head, shipped=shipped or Decimal(0),
                             received=(received or Decimal(0)) if status == "received" else None,
                             damaged=damaged or Decimal(0)))
    out = [line for line in out if line.gap] if gaps_only else out
    return out[offset:offset + limit] if limit is not None else out[offset:]


__all__ = ["HEADER", "ReconLine", "reconciliation"]
