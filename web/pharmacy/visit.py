"""The counter's visit: a patient's health card typed or scanned once, then several items, each
line taking its quantity from as many lots as it needs (first expiry first, shown and changeable
lot by lot), with the patient's last 90 days of dispensings beside the form (an audited read).

One submit records the whole visit in one transaction through the ledger's write path, or nothing:
a refusal on any line names the line and the field. Every entry id is the visit id (drawn with the
form) with the line and the lot, so a retry or a double submit records nothing twice. The controls
of the single dispense apply to every line: policy warnings (prescription, controlled item,
ceiling, patient register) ask for a stated reason before anything is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from stock import errors as domain
from stock import rules
from stock.entries import PolicyNote
from stock.ledger import NewEntry, post
from stock.models import Facility, User
from web import audit, deps
from web.access import STAFF, require_roles, scope_of, visible_facility_ids
from web.pharmacy import queries as q
from web.pharmacy.shared import (
    MSG_INSUFFICIENT, MSG_REASON_NEEDED, MSG_RECORDED_OTHERWISE, MSG_SCAN_LOT_NOT_HELD, acting, fresh_id, local_today,
    render_page, retried, said, tr, utcnow, warn_codes,
)
from web.pharmacy.visit_form import (
    MAX_LINES, MAX_LOTS, PlannedLine, apply_scans, entry_id, line_count, plan, read_lines,
    visit_id_of,
)
from web.templating import render

router = APIRouter(prefix="/pharmacy", include_in_schema=False)

CARD_NOTES = ("unregistered_patient", "deceased_patient")
"""Notes about the patient, shown once at the card rather than on every line."""


@dataclass
class LineView:
    """A line as the page shows it: the typed input, the usable lots and what each gives."""

    index: int
    lots: list
    takes: dict
    split_for: str
    warned: list
    prescriptions: list
    rx_for: str


def _history(request: Request, db: Session, fac: Facility, card: str) -> list:
    """The patient's dispensings of the last 90 days at the facilities the user may see, the read
    recorded in the audit trail with the card, whatever it finds."""
    user = request.state.user
    ids = None if scope_of(user).kind == "national" else visible_facility_ids(db, user)
    rows = q.recent_dispensings(db, card, ids, utcnow())
    audit.record(db, request, "patient_history_read", "patient", card,
                 {"rows": len(rows), "days": q.HISTORY_DAYS, "via": "visit"}, facility_id=fac.id)
    db.commit()
    return rows


def _line_views(request: Request, db: Session, fac: Facility, values: dict, planned: dict[int, PlannedLine],
                warned: dict[int, list]) -> list[LineView]:
    """Each line's usable lots and split, and the patient's open prescriptions for its item (a read
    of the patient's record, audited once for the page)."""
    today = local_today(request, fac)
    card = (values.get("health_card_id") or "").strip()
    views, read = [], {}
    for line in read_lines(values):
        code, rx_for = line.get("item"), f"{card}|{line.get('item')}"
        prescriptions = q.open_prescriptions(db, card, code) if card and code else []
        if card and code:
            read[code] = len(prescriptions)
        if line.get("rx_for") != rx_for:  # drawn for another item or patient: the first open one is proposed
            values.pop(line.key("prescription"), None)
        lots = [c for c in q.fefo_lots(db, fac, line.get("item"), today) if not c.expired] if line.get("item") else []
        got = planned.get(line.index)
        if got is not None:
            takes = {t.lot_number: t.quantity for t in got.takes}
            split_for = line.get("quantity")
        else:
            takes = {lot: text for _, lot, text in line.chosen()}
            split_for = line.get("split_for")
        views.append(LineView(line.index, lots[:MAX_LOTS], takes, split_for, warned.get(line.index, []),
                              prescriptions, rx_for))
    if read:
        audit.record(db, request, "patient_prescriptions_read", "patient", card,
                     {"items": read, "via": "visit"}, facility_id=fac.id)
        db.commit()
    return views


def visit_page(request: Request, db: Session, fac: Facility, values: dict, *, errors: dict | None = None,
               planned: list[PlannedLine] | None = None, warned: dict | None = None, card_warned: list | None = None,
               done: list | None = None, history: bool = True, status: int = 200) -> Response:
    values["lines"] = str(line_count(values))
    card = (values.get("health_card_id") or "").strip()
    by_index = {p.line.index: p for p in planned or []}
    lines = _line_views(request, db, fac, values, by_index, warned or {})
    return render_page(request, fac, "visit", {
        "values": values, "errors": errors or {}, "lines": lines, "card_warned": card_warned or [],
        "warnings": bool(warned or card_warned), "done_lines": done or [],
        "history": _history(request, db, fac, card) if card and history else None,
        "items": q.held_items(db, fac, ""), "max_lines": MAX_LINES,
    }, status)


@router.get("/{facility}/visit")
def visit_form(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
               db: Session = Depends(deps.read_db)):
    fac = acting(db, user, facility)
    recorded = []
    if done:
        visit = visit_id_of(done, "")
        ids = [entry_id(visit, s, k) for s in range(1, MAX_LINES + 1) for k in range(1, MAX_LOTS + 1)]
        recorded = q.stored_lines(db, fac, ids) if visit else []
    return visit_page(request, db, fac, {"visit_id": fresh_id()}, done=recorded, history=False)


@router.post("/{facility}/visit/history")
def visit_history(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                  db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """htmx: the patient's last 90 days beside the form, once the card is typed (audited; the card
    in the body, never in a URL)."""
    fac = acting(db, user, facility)
    card = (values.get("health_card_id") or "").strip()
    rows = _history(request, db, fac, card) if card else None
    return render(request, "pharmacy/_visit_history.html", {"history": rows, "facility": fac})


@router.post("/{facility}/visit/refresh")
def visit_refresh(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                  db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """htmx: the form again with a line added, a scan read into its line, or the lot split of what
    was typed proposed. Records nothing. Always 200 so htmx swaps it in."""
    fac = acting(db, user, facility)
    return _redraw(request, db, fac, values, history=False, status=200)


def _redraw(request: Request, db: Session, fac: Facility, values: dict, *, history: bool, status: int | None = None):
    values["visit_id"] = visit_id_of(values.get("visit_id"), fresh_id())
    scanned, errors = apply_scans(request, db, values)
    _check_scanned_lots(request, db, fac, values, errors)
    if values.get("action") == "add" and not scanned:
        values["lines"] = str(min(MAX_LINES, line_count(values) + 1))
    checked = plan(request, db, fac, values, local_today(request, fac))
    for line in read_lines(values):  # what is typed in full is checked; a line being filled is not
        if line.get("item") and line.get("quantity"):
            errors.update({k: v for k, v in checked.errors.items() if k.startswith(f"l{line.index}_")})
    return visit_page(request, db, fac, values, errors=errors, planned=checked.lines, history=history,
                      status=status if status is not None else (422 if errors else 200))


def _check_scanned_lots(request: Request, db: Session, fac: Facility, values: dict, errors: dict) -> None:
    today = local_today(request, fac)
    for line in read_lines(values):
        lot = line.get("scan_lot")
        if lot and line.get("item") and not any(c.lot_number == lot and not c.expired
                                                for c in q.fefo_lots(db, fac, line.get("item"), today)):
            errors[line.key("scan")] = tr(request, MSG_SCAN_LOT_NOT_HELD, lot=lot, code=line.get("item"))
            values[line.key("scan_lot")] = ""


@router.post("/{facility}/visit")
def visit_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                 db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = acting(db, user, facility)
    visit = values["visit_id"] = visit_id_of(values.get("visit_id"), fresh_id())
    before = q.stored(db, entry_id(visit, 1, 1))
    if before is not None:  # a retry, or the second of a double submit
        return _after_retry(request, db, fac, values, before)
    if values.get("action") in ("add", "check") or any(line.get("scan") for line in read_lines(values)):
        return _redraw(request, db, fac, values, history=True)
    _propose_prescriptions(db, values)
    checked = plan(request, db, fac, values, local_today(request, fac))
    if checked.errors:
        return visit_page(request, db, fac, values, errors=checked.errors,
                          planned=checked.lines, status=422)
    entries, line_of = _entries(checked, fac, user, visit, values)
    try:
        posted = post(db, entries, now=entries[0].occurred_at)
    except domain.EntryConflict:
        db.rollback()  # a double submit that lost the race: the other one recorded the visit
        stored = q.stored(db, entry_id(visit, 1, 1))
        if stored is not None:
            return _after_retry(request, db, fac, values, stored)
        return visit_page(request, db, fac, values, errors={"_form": tr(request, MSG_RECORDED_OTHERWISE)},
                          planned=checked.lines, status=409)
    except domain.DawaError as exc:
        db.rollback()
        line = line_of.get(exc.entry_id or "")
        if isinstance(exc, domain.InsufficientStock):
            message, field, status = tr(request, MSG_INSUFFICIENT, lot=exc.lot or "—", on_hand=exc.on_hand,
                                        asked=exc.asked), "quantity", 409
        else:
            message, field, status = said(request, exc), exc.field or "item", 422
        key = ("health_card_id" if field == "health_card_id" else
               f"l{line.line.index}_{_line_field(field)}" if line else "_form")
        return visit_page(request, db, fac, values, errors={key: message},
                          planned=checked.lines, status=status)
    if not posted[0].created:
        return _after_retry(request, db, fac, values, posted[0].entry)
    warned, card_warned, missing = _warnings(request, checked, posted, line_of, values)
    if warned or card_warned:
        if missing or not values.get("confirm"):
            db.rollback()
            return visit_page(request, db, fac, values, errors=missing, planned=checked.lines, warned=warned,
                              card_warned=card_warned, status=422 if missing else 200)
    for new, p in zip(entries, posted):
        line = line_of[new.entry_id]
        audit.record(db, request, "ledger_post", "ledger_entry", new.entry_id,
                     {"kind": "dispense", "item": new.item_code, "lot": new.lot_number,
                      "quantity": new.quantity, "notes": [n.code for n in p.notes], "reason": new.reason,
                      "visit": visit, "line": line.seq, "overridden": line.overridden,
                      **({"paper_prescription": True} if line.line.get("paper") and not line.line.get("prescription")
                         else {})}, facility_id=fac.id)
    db.commit()
    return RedirectResponse(f"/pharmacy/{fac.code}/visit?done={visit}", status_code=303)


def _propose_prescriptions(db: Session, values: dict) -> None:
    """A line whose prescription list was drawn for another item or patient (or never, without
    scripts) takes the patient's first open prescription for its item, as the page proposes it."""
    card = (values.get("health_card_id") or "").strip()
    for line in read_lines(values):
        code = line.get("item")
        if not (card and code) or line.get("rx_for") == f"{card}|{code}":
            continue
        if line.get("prescription") or line.get("paper"):
            continue
        found = q.open_prescriptions(db, card, code)
        if found:
            values[line.key("prescription")] = found[0].code


def _line_field(field: str) -> str:
    return {"item_code": "item", "lot_number": "lots", "prescription_id": "prescription",
            "serial_number": "scan"}.get(field, field if field in ("quantity", "reason") else "item")


def _entries(checked, fac: Facility, user: User, visit: str, values: dict):
    now = utcnow()
    entries, line_of = [], {}
    visit_reason = (values.get("reason") or "").strip()
    for planned in checked.lines:
        line = planned.line
        on_record = line.get("prescription")
        paper = "" if on_record else line.get("paper")
        serial_lot = line.get("scan_lot") or planned.takes[0].lot_number
        for k, take in enumerate(planned.takes, start=1):
            eid = entry_id(visit, planned.seq, k)
            entries.append(NewEntry(
                entry_id=eid, kind="dispense", facility_code=fac.code, item_code=planned.item.code,
                quantity=take.quantity, occurred_at=now, recorded_by=user.username, lot_number=take.lot_number,
                health_card_id=checked.card, prescription_id=on_record or paper or None,
                reason=line.get("reason") or visit_reason or None,
                serial_number=planned.serial if planned.serial and take.lot_number == serial_lot else None))
            line_of[eid] = planned
    return entries, line_of


def _warnings(request: Request, checked, posted, line_of: dict, values: dict):
    """Notes that need a stated reason, by line (and those about the patient, once), and the reason
    fields still empty."""
    warned: dict[int, list] = {}
    card_warned: list = []
    for p in posted:
        planned = line_of[p.entry.entry_id]
        codes = warn_codes(planned.item, bool(planned.line.get("paper") and not planned.line.get("prescription")))
        for note in p.notes:
            if note.code not in codes:
                continue
            target = card_warned if note.code in CARD_NOTES else warned.setdefault(planned.line.index, [])
            if note.code not in [n.code for n in target]:
                target.append(note)
    for planned in checked.lines:  # a line split across lots is over the ceiling by its total
        ceiling = planned.item.max_dispense_quantity
        mine = warned.get(planned.line.index, [])
        if rules.over_ceiling(planned.quantity, ceiling) and "over_ceiling" not in [n.code for n in mine]:
            warned.setdefault(planned.line.index, []).append(PolicyNote(
                "over_ceiling", rules.over_ceiling_message(planned.quantity, planned.item.unit, ceiling,
                                                           planned.item.code)))
    missing = {}
    visit_reason = (values.get("reason") or "").strip()
    if values.get("confirm"):
        if card_warned and not visit_reason and any(not p.line.get("reason") for p in checked.lines):
            missing["reason"] = tr(request, MSG_REASON_NEEDED)
        for index in warned:
            line = next(p.line for p in checked.lines if p.line.index == index)
            if not line.get("reason") and not visit_reason:
                missing[line.key("reason")] = tr(request, MSG_REASON_NEEDED)
    return warned, card_warned, missing


def _after_retry(request: Request, db: Session, fac: Facility, values: dict, stored) -> Response:
    outcome = retried(request, db, fac, stored)
    if outcome.already:
        return RedirectResponse(f"/pharmacy/{fac.code}/visit?done={values['visit_id']}", status_code=303)
    return visit_page(request, db, fac, values, errors=outcome.errors, history=False, status=outcome.status)


__all__ = ["router", "visit_page"]
