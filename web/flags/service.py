"""Flags and cases as the auditor pages (web.flags.pages), the API (web.api.flags) and exports act on
them: the flag queue and a case narrowed to the reader's scope, patients named by pseudonym, and
the verdict workflow (anomaly.workflow) with its audit record. The caller commits.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from anomaly import export, workflow
from anomaly.models import SEVERITIES, STATUSES, Flag, FlagEvidence, FlagHit
from stock import errors as domain
from stock.models import Facility, Item, LedgerEntry, Lot, Patient, User
from stock.pseudonyms import maybe_pseudonym, pseudonym, pseudonymise_flag, pseudonymise_text
from web import audit
from web.access import MSG_FACILITY_OUTSIDE, Forbidden, NotFound, scope_of, visible_facility_ids
from web.messages import as_json as messages_json

PAGE_SIZE = 25


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


__all__ = ["PAGE_SIZE", "scoped_filters", "list_flags", "flag_in_scope", "evidence_rows", "hits_of", "case",
           "apply_action"]
