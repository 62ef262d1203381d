"""Today's entries, newest first, with a Reverse form on those the user may reverse."""

from __future__ import annotations

from datetime import datetime, time, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from stock import errors as domain
from stock.ledger import reverse
from stock.models import Facility, User
from web import audit, deps
from web.access import NotFound, STAFF, require_roles, reversal_refusal
from web.pharmacy import queries as q
from web.pharmacy.queries import EntryView, PAGE_SIZE
from web.pharmacy.shared import (
    MSG_INSUFFICIENT, MSG_NO_ENTRY, MSG_REASON_NEEDED, REVERSERS, acting, done_entry, form_id, fresh_id,
    local_today, render_page, said, tr, utcnow, zone_of,
)

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


def _today_page(request: Request, db: Session, fac: Facility, *, errors: dict | None = None,
                values: dict | None = None, done: EntryView | None = None, status: int = 200,
                page: int = 1) -> Response:
    """The signed-in user's entries of today (a facility manager's or an admin's: the facility's),
    newest first, PAGE_SIZE a page; a Reverse form on each entry the user may reverse."""
    zone = zone_of(request, fac)
    start = datetime.combine(local_today(request, fac), time.min, tzinfo=zone).astimezone(timezone.utc)
    user = request.state.user
    page = max(page, 1)
    rows = q.entries(db, fac, since=start, by=user.username if user.role == "pharmacist" else None, page=page)
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    now = utcnow()
    reversible = {r.entry_id for r in rows
                  if reversal_refusal(user, entry_id=r.entry_id, facility=fac, recorded_by=r.recorded_by,
                                      recorded_at=r.recorded_at, now=now) is None}
    patients = len({r.health_card_id for r in rows if r.health_card_id})
    if patients:  # the page names patients: a patient-level read, recorded with their number
        audit.record(db, request, "today_read", "facility", fac.code,
                     {"entries": len(rows), "patients": patients, "page": page}, facility_id=fac.id)
        db.commit()
    return render_page(request, fac, "today", {
        "entries": rows, "reversible": reversible, "row_ids": {r.entry_id: fresh_id() for r in rows},
        "errors": errors or {}, "values": values or {}, "done": done, "zone": str(zone),
        "page_number": page, "more": more, "own_only": user.role == "pharmacist"}, status)


@router.get("/{facility}/today")
def today(request: Request, facility: str, done: str = "", page: int = 1,
          user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.db)):
    fac = acting(db, user, facility)
    return _today_page(request, db, fac, done=done_entry(db, fac, done), page=page)


@router.post("/{facility}/reverse")
def reverse_submit(request: Request, facility: str, user: User = Depends(require_roles(*REVERSERS)),
                         db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """Reverse one of the facility's entries by its exact inverse, with a stated reason, if
    web.access lets this user reverse it."""
    fac = acting(db, user, facility)
    target_id = values.get("entry_id", "").strip()
    new_id = form_id(values.get("new_id"))
    reason = values.get("reason", "").strip()
    if not target_id:
        return _today_page(request, db, fac, errors={"_form": tr(request, MSG_NO_ENTRY)}, status=422)
    target = q.stored(db, target_id)
    if target is None or target.facility_id != fac.id:
        raise NotFound(tr(request, MSG_NO_ENTRY), field="entry_id")
    done = q.stored(db, new_id)
    if done is not None and done.reverses == target_id:
        db.rollback()  # a retry of a reversal already recorded
        return RedirectResponse(f"/pharmacy/{fac.code}/today?done={new_id}", status_code=303)

    def again(message: str, status: int) -> Response:
        db.rollback()
        return _today_page(request, db, fac, errors={target_id: message}, values={target_id: reason},
                           status=status)

    refusal = reversal_refusal(user, entry_id=target_id, facility=fac, recorded_by=target.recorded_by,
                               recorded_at=target.recorded_at, now=utcnow())
    if refusal is not None:  # the entry may not be on this user's list: said above it
        db.rollback()
        return _today_page(request, db, fac, errors={"_form": tr(request, refusal.template, **refusal.params)},
                           status=403)
    if not reason:
        return again(tr(request, MSG_REASON_NEEDED), 422)
    try:
        posted = reverse(db, target_id, reason=reason, by=user.username, new_id=new_id)
    except domain.InsufficientStock as exc:
        return again(tr(request, MSG_INSUFFICIENT, lot=exc.lot or "—", on_hand=exc.on_hand, asked=exc.asked), 409)
    except domain.DawaError as exc:
        return again(said(request, exc), 409 if isinstance(exc, domain.AlreadyReversed) else 422)
    audit.record(db, request, "ledger_reverse", "ledger_entry", target_id,
                 {"reversal": posted.entry.entry_id, "reason": reason, "kind": target.kind,
                  "effect": -target.effect}, facility_id=fac.id)
    db.commit()
    return RedirectResponse(f"/pharmacy/{fac.code}/today?done={new_id}", status_code=303)

