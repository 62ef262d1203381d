"""What the pages and the API share: finding a requisition the user may act on, listing those in
their scope, and the audit record every step leaves. The caller (the route) commits."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from stock.models import Facility, User
from stock.requisitions.prepare import prepare, supplier_of
from stock.requisitions import flow
from stock.requisitions.errors import UnknownRequisition
from stock.requisitions.models import Requisition
from web import audit
from web.access import NotFound, may_see_requisition, require_requisition_step, visible_facility_ids


@dataclass(frozen=True)
class Held:
    req: Requisition
    facility: Facility
    supplier: Facility


def load(db: Session, user: User, number: str, step: str | None = None, *, for_update: bool = False) -> Held:
    """The requisition ``number`` if ``user`` may see it (and take ``step``); else not found/refused."""
    try:
        req = flow.get(db, number, for_update=for_update)
    except UnknownRequisition:
        raise NotFound("no such requisition", field="requisition") from None
    facility, supplier = db.get(Facility, req.facility_id), db.get(Facility, req.supplier_id)
    if step is None:
        if not may_see_requisition(user, facility, supplier):
            raise NotFound("no such requisition", field="requisition")
    else:
        require_requisition_step(user, step, facility, supplier)
    return Held(req, facility, supplier)


def visible(db: Session, user: User, *, facility: Facility | None = None, status: str | None = None,
            limit: int = 200) -> list[tuple[Requisition, str, str]]:
    """Requisitions made by or supplied to facilities in ``user``'s scope, newest first, each with
    the facility's and the supplier's codes."""
    fac, sup = aliased(Facility), aliased(Facility)
    stmt = (select(Requisition, fac.code, sup.code).join(fac, fac.id == Requisition.facility_id)
            .join(sup, sup.id == Requisition.supplier_id)
            .order_by(Requisition.created_at.desc(), Requisition.id.desc()).limit(limit))
    ids = visible_facility_ids(db, user)
    stmt = stmt.where(Requisition.facility_id.in_(ids) | Requisition.supplier_id.in_(ids))
    if facility is not None:
        stmt = stmt.where((Requisition.facility_id == facility.id) | (Requisition.supplier_id == facility.id))
    if status:
        stmt = stmt.where(Requisition.status == status)
    return [tuple(row) for row in db.execute(stmt)]


def take_step(db: Session, request: Request, user: User, number: str, step: str, act,
              detail: dict | None = None) -> Held:
    """One step on a requisition, whole: refused unless ``user`` may take it, ``act(held)`` runs the
    domain step, the audit record is written and the request's transaction committed."""
    held = load(db, user, number, step, for_update=True)
    act(held)
    audited(db, request, held, step, detail)
    db.commit()
    return held


def prepare_for(request: Request, db: Session, user: User, fac: Facility, period: str, emergency: bool) -> Held:
    """Prepare a requisition of ``fac`` (pages and API alike): the requester's step on it."""
    supplier = supplier_of(fac, db)
    require_requisition_step(user, "prepare", fac, supplier)
    req = prepare(db, fac, by=user.username, period=period.strip() or None, emergency=emergency,
                  amc_months=request.app.state.settings.amc_months)
    held = Held(req, fac, supplier)
    audited(db, request, held, "prepare", {"period": req.period, "emergency": emergency})
    return held


def audited(db: Session, request: Request, held: Held, action: str, detail: dict | None = None) -> None:
    audit.record(db, request, f"requisition.{action}", "requisition", held.req.number, detail,
                 facility_id=held.facility.id)


__all__ = ["Held", "load", "visible", "audited", "take_step", "prepare_for"]
