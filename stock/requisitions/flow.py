"""A requisition's states and the one function every step goes through.

draft → submitted → approved → shipped → received, or submitted → rejected. Each step checks the
state it starts from, changes it, and writes a timeline event naming who did it and why (as the
flag review does). Quantities change only in the state that owns them: the requesting facility's
in draft, the supplier's approval in submitted. A quantity that departs from the one before it
(requested from suggested, approved from requested) needs a reason.

Who may take a step is not decided here but in web.access; these functions only flush.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.models import Item
from stock.requisitions.errors import InvalidLine, UnknownRequisition, WrongState
from stock.requisitions.models import Requisition, RequisitionEvent, RequisitionLine
from stock.requisitions.notes import encode, part

STEPS = {
    # action: (states it may start from, state after)
    "prepared": ((), "draft"),
    "changed": (("draft",), "draft"),
    "submitted": (("draft",), "submitted"),
    "approved": (("submitted",), "approved"),
    "rejected": (("submitted",), "rejected"),
    "shipped": (("approved",), "shipped"),
    "received": (("shipped",), "received"),
}


def record(session: Session, req: Requisition, action: str, by: str, *, note: str | None = None,
           now: datetime | None = None) -> RequisitionEvent:
    """Move ``req`` by ``action`` and write the timeline event; refuse a step from a wrong state."""
    starts, after = STEPS[action]
    if starts and req.status not in starts:
        raise WrongState(f"requisition {req.number} is {req.status}; it cannot be {action}",
                         status=req.status, action=action)
    req.status = after
    event = RequisitionEvent(requisition_id=req.id, at=now or datetime.now(timezone.utc), by=by,
                             action=action, status=after, note=note)
    session.add(event)
    session.flush()
    return event


def get(session: Session, number: str, *, for_update: bool = False) -> Requisition:
    stmt = select(Requisition).where(Requisition.number == number)
    if for_update:
        stmt = stmt.with_for_update()
    req = session.scalars(stmt).one_or_none()
    if req is None:
        raise UnknownRequisition(f"no requisition {number!r}")
    return req


@dataclass(frozen=True)
class LineView:
    line: RequisitionLine
    item: Item


def lines(session: Session, req: Requisition) -> list[LineView]:
    rows = session.execute(select(RequisitionLine, Item).join(Item, Item.id == RequisitionLine.item_id)
                           .where(RequisitionLine.requisition_id == req.id).order_by(Item.code))
    return [LineView(line, item) for line, item in rows]


def timeline(session: Session, req: Requisition) -> list[RequisitionEvent]:
    return list(session.scalars(select(RequisitionEvent).where(RequisitionEvent.requisition_id == req.id)
                                .order_by(RequisitionEvent.at, RequisitionEvent.id)))


@dataclass(frozen=True)
class Decision:
    """A quantity for one line (by item code) and the reason for it."""

    item_code: str
    quantity: Decimal
    reason: str | None = None


def _by_code(session: Session, req: Requisition, decisions: list[Decision]) -> list[tuple[LineView, Decision]]:
    views = {v.item.code: v for v in lines(session, req)}
    out = []
    for d in decisions:
        view = views.get(d.item_code)
        if view is None:
            raise InvalidLine(f"requisition {req.number} has no line for {d.item_code}", field="item_code",
                              item_code=d.item_code)
        if d.quantity < 0:
            raise InvalidLine(f"{d.item_code}: the quantity must not be negative", field="quantity",
                              item_code=d.item_code)
        if d.quantity != d.quantity.to_integral_value():
            raise InvalidLine(f"{d.item_code}: the quantity must be whole {view.item.unit}", field="quantity",
                              item_code=d.item_code)
        out.append((view, d))
    return out


def _reason(d: Decision, before: Decimal, what: str) -> str | None:
    reason = (d.reason or "").strip() or None
    if d.quantity != before and reason is None:
        raise InvalidLine(f"{d.item_code}: a {what} quantity other than {before} needs a reason", field="reason",
                          item_code=d.item_code)
    return reason


def change(session: Session, req: Requisition, decisions: list[Decision], *, by: str,
           now: datetime | None = None) -> None:
    """The requesting facility changes requested quantities (draft only), each with a reason."""
    if req.status != "draft":
        raise WrongState(f"requisition {req.number} is {req.status}; it cannot be changed",
                         status=req.status, action="changed")
    notes = []
    for view, d in _by_code(session, req, decisions):
        reason = _reason(d, view.line.suggested, "requested")
        if d.quantity != view.line.requested or reason != view.line.request_reason:
            notes.append(part("quantity", item=d.item_code, before=view.line.requested, after=d.quantity,
                              reason=reason))
            view.line.requested, view.line.request_reason = d.quantity, reason
    if notes:
        record(session, req, "changed", by, note=encode(notes), now=now)


def submit(session: Session, req: Requisition, *, by: str, now: datetime | None = None) -> None:
    record(session, req, "submitted", by, now=now)


def approve(session: Session, req: Requisition, decisions: list[Decision], *, by: str,
            now: datetime | None = None) -> None:
    """The supplier (or the region) approves every line: as requested unless ``decisions`` cut
    or raise it, with a reason."""
    if req.status != "submitted":
        raise WrongState(f"requisition {req.number} is {req.status}; it cannot be approved",
                         status=req.status, action="approved")
    decided = {view.line.id: (d, _reason(d, view.line.requested, "approved"))
               for view, d in _by_code(session, req, decisions)}
    notes = []
    for view in lines(session, req):
        d, reason = decided.get(view.line.id, (None, None))
        view.line.approved = d.quantity if d else view.line.requested
        view.line.approval_reason = reason
        if view.line.approved != view.line.requested:
            notes.append(part("quantity", item=view.item.code, before=view.line.requested, after=view.line.approved,
                              reason=reason))
    record(session, req, "approved", by, note=encode(notes), now=now)


def reject(session: Session, req: Requisition, *, reason: str, by: str, now: datetime | None = None) -> None:
    if not (reason or "").strip():
        raise InvalidEntry("a rejection needs a reason", field="reason")
    record(session, req, "rejected", by, note=encode([part("text", text=reason.strip())]), now=now)


__all__ = ["STEPS", "record", "get", "lines", "timeline", "LineView", "Decision", "change", "submit", "approve",
           "reject"]
