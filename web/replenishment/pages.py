"""Requisition pages: the list, preparing one, and one requisition with the steps its state and
the reader allow (change with reasons, submit, approve or cut or reject, ship, proof of delivery)
and its timeline.

Who may take a step is decided in web.access (``require_requisition_step``); the page is only told
which steps to offer. A refused step re-renders the page with the problem next to its line, in the
reader's language, and the typed values kept.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from stock.errors import DawaError, InvalidEntry
from stock.models import Facility, User
from stock.quantities import parse_quantity
from stock.requisitions import flow
from stock.requisitions.errors import InvalidLine, RequisitionExists, WrongState
from stock.requisitions.fulfil import Arrival, fulfil, receive, shipments
from stock.requisitions.packs import in_base_units, packs_of
from stock.requisitions.figures import add_months, month_start, period_label, zone_of
from stock.requisitions.prepare import supplier_of
from web import deps
from web.access import (AccessError, NotFound, current_user, facility_in_scope, require_requisition_step,
                        visible_facilities)
from web.replenishment.notes import note_text
from web.replenishment.service import Held, audited, load, prepare_for, visible
from web.templating import gettext, render

router = APIRouter(include_in_schema=False)

STEPS = ("change", "submit", "approve", "reject", "fulfil", "receive")

MSG_REASON = "A quantity other than the one before it needs a reason."
MSG_QUANTITY = "Enter a whole number, zero or more."
MSG_TOO_MANY = "More than was shipped."
MSG_DAMAGED = "More damaged than received."
MSG_STATE = "This requisition is no longer in a state that allows this step; the page shows it as it is now."
MSG_PERIOD = "Choose a month that has ended (YYYY-MM)."
MSG_EXISTS = "This facility already has a requisition for that month."
MSG_NO_SUPPLIER = "This facility has no supplying store to request from."
MSG_REJECT_REASON = "A rejection needs a reason."
MSG_RECEIVED_ALREADY = "This waybill was already received on the transfers page."
MSG_FAILED = "Not saved: %(problem)s"


def _t(request: Request, message: str, **kw) -> str:
    return gettext(request.state.lang, message, **kw)


@router.get("/requisitions")
def index(request: Request, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    facilities = [f for f in visible_facilities(db, user) if f.parent_id is not None]
    return render(request, "replenishment/list.html", {"rows": visible(db, user), "facilities": facilities})


def _new_page(request: Request, fac: Facility, values: dict, errors: dict, status: int = 200):
    zone = zone_of(fac)
    last = period_label(add_months(month_start(datetime.now(timezone.utc), zone), -1, zone), zone)
    return render(request, "replenishment/new.html", {"facility": fac, "values": {"period": last, **values},
                                                      "errors": errors}, status_code=status)


@router.get("/requisitions/new/{facility}")
def new(request: Request, facility: str, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    fac = facility_in_scope(db, user, facility)
    require_requisition_step(user, "prepare", fac, supplier_of(fac, db) if fac.parent_id else fac)
    return _new_page(request, fac, {}, {})


@router.post("/requisitions/new/{facility}")
def create(request: Request, facility: str, user: User = Depends(current_user), db: Session = Depends(deps.db),
           values: dict[str, str] = Depends(deps.form_fields)):
    fac = facility_in_scope(db, user, facility)
    require_requisition_step(user, "prepare", fac, supplier_of(fac, db) if fac.parent_id else fac)
    emergency = values.get("emergency") == "1"
    try:
        held = prepare_for(request, db, user, fac, values.get("period", ""), emergency)
    except AccessError:
        raise
    except DawaError as exc:
        db.rollback()
        message = {RequisitionExists: MSG_EXISTS}.get(type(exc)) or (
            MSG_NO_SUPPLIER if exc.field == "facility" else MSG_PERIOD)
        return _new_page(request, fac, values, {"period": _t(request, message)}, 409 if type(exc) is RequisitionExists else 422)
    db.commit()
    return RedirectResponse(f"/requisitions/{held.req.number}", status_code=303)


def _can(user: User, held: Held) -> dict[str, bool]:
    can = {}
    for step in STEPS:
        try:
            require_requisition_step(user, step, held.facility, held.supplier)
            can[step] = True
        except AccessError:
            can[step] = False
    return can


def _page(request: Request, db: Session, user: User, held: Held, *, errors: dict | None = None,
          values: dict | None = None, status: int = 200):
    return render(request, "replenishment/requisition.html", {
        "r": held.req, "facility": held.facility, "supplier": held.supplier, "lines": (lines := flow.lines(db, held.req)),
        "packs": packs_of(db, [v.item.id for v in lines]),
        "shipments": shipments(db, held.req), "timeline": (timeline := flow.timeline(db, held.req)),
        "notes": {e.id: note_text(request.state.lang, e.note) for e in timeline}, "can": _can(user, held),
        "errors": errors or {}, "values": values or {}}, status_code=status)


@router.get("/requisitions/{number}")
def show(request: Request, number: str, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    return _page(request, db, user, load(db, user, number))


def _decisions(request: Request, held: Held, db: Session, values: dict, errors: dict) -> list[flow.Decision]:
    out = []
    for view in flow.lines(db, held.req):
        code = view.item.code
        text = values.get(f"qty_{code}")
        if text is None:
            continue
        try:
            qty = in_base_units(db, view.item, parse_quantity(text), values.get(f"pack_{code}"))
        except (ValueError, InvalidEntry):
            errors[code] = _t(request, MSG_QUANTITY)
            continue
        out.append(flow.Decision(code, qty, values.get(f"reason_{code}")))
    return out


def _arrivals(request: Request, held: Held, db: Session, values: dict, errors: dict) -> list[Arrival]:
    out = []
    for view in shipments(db, held.req):
        sid = view.shipment.id
        try:
            received = parse_quantity(values.get(f"received_{sid}", str(view.shipment.quantity)))
            damaged = parse_quantity(values.get(f"damaged_{sid}", "") or "0")
        except ValueError:
            errors[str(sid)] = _t(request, MSG_QUANTITY)
            continue
        out.append(Arrival(sid, received, damaged, values.get(f"note_{sid}")))
    return out


def _problem(request: Request, exc: DawaError) -> tuple[str, str, int]:
    """(where, message, status) for a refused step: the line's item code, or the form."""
    if isinstance(exc, WrongState):
        return "_form", _t(request, MSG_STATE), 409
    if isinstance(exc, InvalidLine):
        message = {"reason": MSG_REASON, "received": MSG_TOO_MANY, "damaged": MSG_DAMAGED}.get(exc.field, MSG_QUANTITY)
        return exc.item_code or "_form", _t(request, message), 422
    if isinstance(exc, InvalidEntry) and exc.field == "reason":
        return "reason", _t(request, MSG_REJECT_REASON), 422
    if isinstance(exc, InvalidEntry) and exc.field == "waybill":
        return "_form", _t(request, MSG_RECEIVED_ALREADY), 409
    return "_form", _t(request, MSG_FAILED, problem=exc.message), 409


@router.post("/requisitions/{number}/{step}")
def act(request: Request, number: str, step: str, user: User = Depends(current_user), db: Session = Depends(deps.db),
        values: dict[str, str] = Depends(deps.form_fields)):
    """One step on a requisition, from its page."""
    if step not in STEPS:
        raise NotFound("no such page")
    held = load(db, user, number, step, for_update=True)
    errors: dict[str, str] = {}
    try:
        if step in ("change", "approve"):
            decisions = _decisions(request, held, db, values, errors)
            if not errors:
                (flow.change if step == "change" else flow.approve)(db, held.req, decisions, by=user.username)
        elif step == "submit":
            flow.submit(db, held.req, by=user.username)
        elif step == "reject":
            flow.reject(db, held.req, reason=values.get("reason", ""), by=user.username)
        elif step == "fulfil":
            fulfil(db, held.req, by=user.username)
        else:
            arrivals = _arrivals(request, held, db, values, errors)
            if not errors:
                receive(db, held.req, arrivals, by=user.username)
    except DawaError as exc:
        db.rollback()
        where, message, status = _problem(request, exc)
        return _page(request, db, user, load(db, user, number), errors={where: message}, values=values, status=status)
    if errors:
        db.rollback()
        return _page(request, db, user, load(db, user, number), errors=errors, values=values, status=422)
    audited(db, request, held, step)
    db.commit()
    return RedirectResponse(f"/requisitions/{number}", status_code=303)


__all__ = ["router"]
