"""Pages for ministry auditors: the flag queue, a flag's case file, the verdict workflow and
export of a case.

An auditor (or an admin) sees the flags of facilities in their scope (web.access): a regional
auditor their region's, a national one every flag. A flag outside the scope is refused before
anything about it is read. The case file shows what a person needs to judge: the detectors'
reasons, the evidence rows from the ledger, the patient's dispensing history across facilities
(a read of a patient's history: audited), the recording user's activity against colleagues at
the facility, and the facility's monthly consumption of the item against its peers. Actions go
through anomaly.workflow (the state machine), each with an audit record in the same transaction.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anomaly import export, workflow
from anomaly.flags import UnknownFlag
from anomaly.models import SEVERITIES, STATUSES, Flag, FlagEvidence, FlagHit
from stock import errors as domain
from stock import queries
from stock.models import Facility, Item, LedgerEntry, Lot, Patient, User
from stock.cells import csv_text
from stock.pseudonyms import maybe_pseudonym, patient_key, pseudonym, pseudonymise_flag, pseudonymise_text
from web import audit, deps
from web.downloads import attachment
from web.access import MSG_FACILITY_OUTSIDE, REVIEWERS, Forbidden, NotFound, require_roles, scope_of, visible_facility_ids
from web.messages import as_json as messages_json
from web.templating import gettext, render

router = APIRouter(prefix="/flags", include_in_schema=False)

PAGE_SIZE = 25
MSG_ACTION_DONE = "Recorded."
MSG_NOT_ALLOWED = "You cannot %(action)s a flag that is %(state)s."
MSG_DISMISS_WHY = "Say why you dismiss this flag: a comment is required."
MSG_ESCALATE_WHY = "Say why you escalate this flag: a comment is required."

reviewer = require_roles(*REVIEWERS)


# --- access and queries shared with the API (web.api.flags) ----------------------------------

def scoped_filters(db: Session, user: User, *, region: str | None = None, facility: str | None = None) -> dict:
    """export.query's filters narrowed to ``user``'s scope; asking for a place outside it is refused."""
    scope = scope_of(user)
    region = (region or "").strip() or None
    facility = (facility or "").strip() or None
    if scope.kind == "region":
        if region and region != scope.region:
            raise Forbidden("region %(region)s is outside your scope", field="region", params={"region": region})
        region = scope.region
    if facility:
        fac = db.scalars(select(Facility).where(Facility.code == facility)).first()
        if fac is None:
            raise NotFound("no facility '%(facility)s'", field="facility", params={"facility": facility})
        if not scope.allows(fac):
            raise Forbidden(MSG_FACILITY_OUTSIDE, field="facility", params={"facility": facility})
    elif scope.kind == "facility":
        facility = db.get(Facility, scope.facility_id).code
    return {"region": region, "facility": facility}


def list_flags(db: Session, user: User, key: str, *, region=None, facility=None, detector=None, severity=None,
               status=None, limit: int = PAGE_SIZE, offset: int = 0) -> tuple[list[export.FlagRow], bool]:
    """One page of flags in scope, most suspicious first, and whether more follow; patients named
    by pseudonym under ``key``."""
    for name, value, allowed in (("severity", severity, SEVERITIES), ("status", status, STATUSES)):
        if value and not set(value.split(",")) <= set(allowed):
            raise domain.InvalidEntry(f"{name} {value!r} is not one of {', '.join(allowed)}", field=name)
    where = scoped_filters(db, user, region=region, facility=facility)
    rows = export.query(db, detector=detector or None, severity=severity or None, status=status or None,
                        limit=limit + 1, offset=offset, **where)
    return [pseudonymise_flag(r, key) for r in rows[:limit]], len(rows) > limit


def flag_in_scope(db: Session, user: User, flag_id: str) -> Flag:
    """The flag, if ``user`` may see it: 404 if unknown, 403 if its facility is outside the scope
    (a flag tied to no facility only for national users)."""
    flag = db.get(Flag, flag_id)
    if flag is None:
        raise NotFound("no flag '%(flag)s'", field="flag_id", params={"flag": flag_id})
    scope = scope_of(user)
    if scope.kind != "national":
        fac = db.get(Facility, flag.facility_id) if flag.facility_id is not None else None
        if fac is None or not scope.allows(fac):
            raise Forbidden("flag %(flag)s is outside your scope", field="flag_id", params={"flag": flag_id})
    return flag


def evidence_rows(db: Session, flag_id: str, key: str, facility_ids: list[int] | None = None) -> list[dict]:
    """The ledger rows a flag rests on, in the order they happened; only those of ``facility_ids``
    when given (a flag in scope may rest on rows of facilities outside it, which stay unseen).
    Patients are named by their pseudonym under ``key``."""
    stmt = (select(LedgerEntry, Facility.code, Item.code, Lot.lot_number, Patient.health_card_id)
            .join(FlagEvidence, FlagEvidence.entry_id == LedgerEntry.entry_id)
            .join(Facility, Facility.id == LedgerEntry.facility_id)
            .join(Item, Item.id == LedgerEntry.item_id)
            .join(Lot, Lot.id == LedgerEntry.lot_id)
            .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
            .where(FlagEvidence.flag_id == flag_id)
            .order_by(LedgerEntry.occurred_at, LedgerEntry.id))
    if facility_ids is not None:
        stmt = stmt.where(LedgerEntry.facility_id.in_(facility_ids))
    return [{"entry_id": e.entry_id, "occurred_at": e.occurred_at, "recorded_at": e.recorded_at,
             "facility_code": fac, "kind": e.kind, "item_code": item, "lot_number": lot, "quantity": e.quantity,
             "effect": e.effect, "recorded_by": e.recorded_by, "patient": maybe_pseudonym(card, key),
             "prescription_id": e.prescription_ref, "counterparty": e.counterparty, "reason": e.reason,
             "document_number": e.document_number, "reverses": e.reverses}
            for e, fac, item, lot, card in db.execute(stmt)]


def hits_of(db: Session, flag_id: str) -> list[FlagHit]:
    return list(db.scalars(select(FlagHit).where(FlagHit.flag_id == flag_id)
                           .order_by(FlagHit.score.desc(), FlagHit.detector)))


def case(db: Session, flag: Flag, user: User, key: str) -> dict:
    """A flag with its detectors' findings, evidence rows and timeline, as plain data; the evidence
    is limited to the facilities in ``user``'s scope, and patients are named by pseudonym (under
    ``key``): the clear health card is shown only on the audited patient history of the flag page."""
    national = scope_of(user).kind == "national"
    patients = [flag.subject_id] if flag.subject == "patient" else []
    fac = db.get(Facility, flag.facility_id) if flag.facility_id is not None else None
    return {
        "flag_id": flag.flag_id, "status": flag.status, "assignee": flag.assignee, "severity": flag.severity,
        "score": round(flag.score, 4), "rank_score": round(flag.rank_score, 4), "detectors": flag.detectors,
        "reason": pseudonymise_text(flag.reason, patients, key), "messages": messages_json(flag.messages, patients, key),
        "subject": flag.subject,
        "subject_id": pseudonym(flag.subject_id, key) if flag.subject == "patient" else flag.subject_id,
        "facility_code": fac.code if fac else None, "region": fac.region if fac else None,
        "created_at": flag.created_at, "updated_at": flag.updated_at,
        "allowed_actions": workflow.allowed_actions(flag.status),
        "hits": [{"detector": h.detector, "score": round(h.score, 4), "reason": pseudonymise_text(h.reason, patients, key),
                  "messages": messages_json(h.messages, patients, key),
                  "details": pseudonymise_text(h.details, patients, key) if isinstance(h.details, str) else h.details}
                 for h in hits_of(db, flag.flag_id)],
        "evidence": evidence_rows(db, flag.flag_id, key, None if national else visible_facility_ids(db, user)),
        "timeline": [asdict(t) for t in workflow.timeline(db, flag.flag_id)],
    }


def apply_action(request: Request, db: Session, user: User, flag: Flag, action: str, comment: str | None,
                 assignee: str | None) -> None:
    """Run a workflow action as ``user`` and audit it; the caller commits. An assignee must be able
    to see the flag."""
    if action == "assign" and assignee:
        person = db.scalars(select(User).where(User.username == assignee.strip())).first()
        if workflow.can_be_assigned(person):
            try:
                flag_in_scope(db, person, flag.flag_id)
            except Forbidden:
                raise domain.InvalidEntry(f"{assignee} cannot see this flag: it is outside their scope",
                                          field="assignee") from None
    before = flag.status
    event = workflow.act(db, flag.flag_id, action, by=user.username, comment=comment, assignee=assignee,
                         now=datetime.now(timezone.utc))
    audit.record(db, request, f"flag_{action}", "flag", flag.flag_id,
                 {"from": before, "to": event.to_state, "assignee": event.assignee, "comment": event.comment},
                 facility_id=flag.facility_id)


def case_json(data: dict) -> str:
    return json.dumps(data, default=_plain, ensure_ascii=False, indent=2) + "\n"


def case_csv(data: dict) -> str:
    """One CSV with three sections (flag, evidence, timeline), each with its own header row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", *export.EXPORT_COLUMNS, "status", "assignee"])
    w.writerow(["flag", *[_cell(v) for v in (
        data["flag_id"], data["detectors"], data["score"], data["severity"], data["facility_code"], data["subject"],
        data["subject_id"], ";".join(e["entry_id"] for e in data["evidence"]), data["reason"], data["created_at"],
        data["status"], data["assignee"])]])
    w.writerow([])
    cols = ["entry_id", "occurred_at", "facility_code", "kind", "item_code", "lot_number", "quantity", "effect",
            "recorded_by", "patient", "prescription_id", "counterparty", "reason", "reverses"]
    w.writerow(["evidence", *cols])
    for e in data["evidence"]:
        w.writerow(["evidence", *[_cell(e[c]) for c in cols]])
    w.writerow([])
    tcols = ["at", "by", "action", "from_state", "to_state", "assignee", "comment"]
    w.writerow(["timeline", *tcols])
    for t in data["timeline"]:
        w.writerow(["timeline", *[_cell(t[c]) for c in tcols]])
    return buf.getvalue()


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value).__name__)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, Decimal)):
        return str(_plain(value))
    return csv_text(str(value))


# --- context for judging a flag -----------------------------------------------------------------

def _patient_card(db: Session, flag: Flag, facility_ids: list[int] | None) -> str | None:
    """The clear health card of the patient the flag is about (its subject, or the first patient
    of its evidence in scope), for the audited patient history."""
    if flag.subject == "patient":
        return flag.subject_id
    stmt = (select(Patient.health_card_id).join(LedgerEntry, LedgerEntry.patient_id == Patient.id)
            .join(FlagEvidence, FlagEvidence.entry_id == LedgerEntry.entry_id)
            .where(FlagEvidence.flag_id == flag.flag_id).order_by(LedgerEntry.occurred_at, LedgerEntry.id).limit(1))
    if facility_ids is not None:
        stmt = stmt.where(LedgerEntry.facility_id.in_(facility_ids))
    return db.scalar(stmt)


def _window(evidence: list[dict], flag: Flag) -> tuple[datetime, datetime]:
    end = max((e["occurred_at"] for e in evidence), default=flag.created_at)
    return end - timedelta(days=90), end + timedelta(days=1)


def user_activity(db: Session, facility_id: int, start: datetime, end: datetime) -> list[dict]:
    """Dispensings per recording user at the facility over the window, busiest first."""
    stmt = (select(LedgerEntry.recorded_by, func.count(), func.sum(LedgerEntry.quantity),
                   func.count(func.distinct(LedgerEntry.patient_id)))
            .where(LedgerEntry.facility_id == facility_id, LedgerEntry.kind == "dispense",
                   LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)
            .group_by(LedgerEntry.recorded_by).order_by(func.count().desc(), LedgerEntry.recorded_by))
    return [{"user": u, "dispensings": n, "quantity": q or Decimal(0), "patients": p} for u, n, q, p in db.execute(stmt)]


def consumption_vs_peers(db: Session, facility: Facility, item_id: int, end: datetime, months: int = 12) -> dict:
    """Monthly quantity dispensed of the item at the facility, and the mean of facilities of the
    same kind that dispensed it, over the ``months`` before ``end``."""
    start = (end - timedelta(days=31 * months)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stmt = (select(LedgerEntry.facility_id, LedgerEntry.occurred_at, LedgerEntry.quantity)
            .join(Facility, Facility.id == LedgerEntry.facility_id)
            .where(LedgerEntry.item_id == item_id, LedgerEntry.kind == "dispense", Facility.kind == facility.kind,
                   LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end))
    own: dict[str, Decimal] = defaultdict(Decimal)
    peers: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for fid, when, qty in db.execute(stmt):
        month = when.strftime("%Y-%m")
        if fid == facility.id:
            own[month] += qty
        else:
            peers[month][fid] += qty
    labels, cur = [], start
    while cur < end:
        labels.append(cur.strftime("%Y-%m"))
        cur = (cur + timedelta(days=32)).replace(day=1)
    peer_ids = {f for m in peers.values() for f in m}
    mean = [float(sum(peers[m].values()) / len(peer_ids)) if peer_ids else 0.0 for m in labels]
    return {"labels": labels, "own": [float(own.get(m, 0)) for m in labels], "peers": mean, "peer_count": len(peer_ids)}


# --- pages -------------------------------------------------------------------------------------

OPEN_CASES = "open,assigned"
"""The status filter of the cases still to work on: where an auditor lands (web.pages.LANDINGS)."""


def _filters(request: Request) -> dict:
    q = request.query_params
    return {k: (q.get(k) or "").strip() for k in ("region", "facility", "detector", "severity", "status")}


@router.get("")
def queue(request: Request, page: int = Query(1, ge=1, le=100000), user: User = Depends(reviewer),
          db: Session = Depends(deps.db)):
    """The flag queue, most suspicious first, filtered and paged; htmx asks for the table alone.
    Patients are named by pseudonym; a page that names any is audited with their number, as the API's."""
    filters = _filters(request)
    rows, more = list_flags(db, user, patient_key(request.app.state.settings), **{k: v or None for k, v in filters.items()},
                            limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    patients = len({r.subject_id for r in rows if r.subject == "patient"})
    if patients:
        audit.record(db, request, "flags_read", "flag", None, {"flags": len(rows), "patients": patients, "via": "page"})
        db.commit()
    scope = scope_of(user)
    fac_stmt = select(Facility.code, Facility.region).order_by(Facility.code)
    if scope.kind != "national":
        fac_stmt = fac_stmt.where(Facility.id.in_(visible_facility_ids(db, user)))
    places = db.execute(fac_stmt).all()
    detectors = list(db.scalars(select(FlagHit.detector).distinct().order_by(FlagHit.detector)))
    query_string = urlencode({k: v for k, v in filters.items() if v})
    ctx = {"rows": rows, "more": more, "page": page, "filters": filters, "query_string": query_string,
           "facilities": [c for c, _r in places], "regions": sorted({r for _c, r in places}),
           "detectors": detectors, "severities": SEVERITIES, "statuses": STATUSES,
           "open_cases": OPEN_CASES}
    name = "auditor/_queue_table.html" if request.headers.get("hx-request") else "auditor/queue.html"
    return render(request, name, ctx)


def _case_page(request: Request, db: Session, user: User, flag: Flag, *, errors: dict | None = None,
               form: dict | None = None, done: str | None = None, status_code: int = 200):
    data = case(db, flag, user, patient_key(request.app.state.settings))
    context: dict = {"patient": None, "history": [], "activity": [], "chart": None, "suspects": set()}
    evidence = data["evidence"]
    in_scope = None if scope_of(user).kind == "national" else visible_facility_ids(db, user)
    card = _patient_card(db, flag, in_scope)
    if card:
        history = queries.patient_dispensings(db, card, limit=200, facility_ids=in_scope)
        audit.record(db, request, "patient_history_read", "patient", card,
                     {"rows": len(history), "via": "flag", "flag_id": flag.flag_id}, facility_id=flag.facility_id)
        context.update(patient=card, history=history)
    start, end = _window(evidence, flag)
    if flag.facility_id is not None:
        context["activity"] = user_activity(db, flag.facility_id, start, end)
        context["suspects"] = {e["recorded_by"] for e in evidence} | ({flag.subject_id} if flag.subject == "user" else set())
        item_code = next((e["item_code"] for e in evidence), None)
        item = db.scalars(select(Item).where(Item.code == item_code)).first() if item_code else None
        if item is not None:
            fac = db.get(Facility, flag.facility_id)
            context["chart"] = {"item": item.code, "facility": fac.code,
                                **consumption_vs_peers(db, fac, item.id, end)}
    reviewers = [u for u in db.scalars(select(User).where(User.role.in_(REVIEWERS), User.active.is_(True))
                                       .order_by(User.username))
                 if _sees(db, u, flag)]
    db.commit()  # the audit record of the patient history read
    return render(request, "auditor/flag.html",
                  {"case": data, "errors": errors or {}, "form": form or {}, "done": done,
                   "reviewers": [u.username for u in reviewers], **context}, status_code=status_code)


def _sees(db: Session, user: User, flag: Flag) -> bool:
    try:
        flag_in_scope(db, user, flag.flag_id)
    except (Forbidden, NotFound):
        return False
    return True


@router.get("/{flag_id}")
def flag_page(request: Request, flag_id: str, user: User = Depends(reviewer), db: Session = Depends(deps.db)):
    flag = flag_in_scope(db, user, flag_id)
    done = gettext(request.state.lang, MSG_ACTION_DONE) if request.query_params.get("done") else None
    return _case_page(request, db, user, flag, done=done)


@router.post("/{flag_id}/actions")
def flag_action(request: Request, flag_id: str, user: User = Depends(reviewer), db: Session = Depends(deps.db),
                form: dict[str, str] = Depends(deps.form_fields)):
    flag = flag_in_scope(db, user, flag_id)
    values = {k: str(form.get(k) or "") for k in ("action", "comment", "assignee")}
    try:
        apply_action(request, db, user, flag, values["action"], values["comment"], values["assignee"] or None)
    except workflow.IllegalTransition as exc:
        db.rollback()
        message = gettext(request.state.lang, MSG_NOT_ALLOWED, action=exc.action, state=exc.state)
        return _case_page(request, db, user, db.get(Flag, flag_id), errors={"action": message}, form=values,
                          status_code=409)
    except workflow.CommentRequired as exc:
        db.rollback()
        message = gettext(request.state.lang, MSG_DISMISS_WHY if exc.action == "dismiss" else MSG_ESCALATE_WHY)
        return _case_page(request, db, user, db.get(Flag, flag_id), errors={"comment": message}, form=values,
                          status_code=422)
    except (domain.InvalidEntry, UnknownFlag) as exc:
        db.rollback()
        return _case_page(request, db, user, db.get(Flag, flag_id), errors={exc.field or "action": exc.message},
                          form=values, status_code=422)
    db.commit()
    return RedirectResponse(f"/flags/{flag_id}?done=1#timeline", status_code=303)


@router.get("/{flag_id}/export")
def export_case(request: Request, flag_id: str, format: str = Query("json", pattern="^(json|csv)$"),
                user: User = Depends(reviewer), db: Session = Depends(deps.db)):
    """The case as a file: the flag, its evidence rows and its timeline."""
    flag = flag_in_scope(db, user, flag_id)
    data = case(db, flag, user, patient_key(request.app.state.settings))
    audit.record(db, request, "flag_exported", "flag", flag_id, {"format": format}, facility_id=flag.facility_id)
    db.commit()
    if format == "csv":
        body, media = case_csv(data), "text/csv; charset=utf-8"
    else:
        body, media = case_json(data), "application/json"
    return Response(body, media_type=media, headers=attachment("flag", flag_id, ext=format))


__all__ = ["router", "scoped_filters", "list_flags", "flag_in_scope", "case", "apply_action", "case_json",
           "case_csv", "REVIEWERS"]
