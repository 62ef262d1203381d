"""Flags and the verdict workflow, for auditors and admins within their scope (the same rules
and the same code as the auditor pages, web.auditor)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from anomaly.workflow import ACTIONS, IllegalTransition
from stock.models import User
from stock.pseudonyms import patient_key
from web import audit, deps
from web.api.schemas import MAX_OFFSET, ErrorBody
from web.app import DOMAIN_STATUS
from web.auditor import apply_action, case, flag_in_scope, list_flags, reviewer
from web.messages import as_json as messages_json

DOMAIN_STATUS.setdefault(IllegalTransition, 409)  # the flag's state does not allow the action

router = APIRouter(prefix="/flags", tags=["flags"])

MESSAGES_DOC = ("the reason as messages, for a client to render in its reader's language: each a key (the "
                "English msgid of Dawa's catalogs, with its plural and context) and typed parameters "
                "(count, num, pct, sci, qty with unit, day, month, code, join, or a nested message); "
                "null for flags raised before reasons were kept so")


class FlagOut(BaseModel):
    flag_id: str
    detector: str
    score: float
    rank_score: float
    severity: str
    status: str
    facility_code: str
    region: str
    subject: str
    subject_id: str
    entry_ids: list[str]
    reason: str
    messages: list[dict[str, Any]] | None = Field(None, description=MESSAGES_DOC)
    created_at: str


class FlagPage(BaseModel):
    flags: list[FlagOut]
    limit: int
    offset: int
    more: bool


class HitOut(BaseModel):
    detector: str
    score: float
    reason: str
    messages: list[dict[str, Any]] | None = Field(None, description=MESSAGES_DOC)
    details: dict[str, Any]


class EvidenceOut(BaseModel):
    entry_id: str
    occurred_at: datetime
    recorded_at: datetime
    facility_code: str
    kind: str
    item_code: str
    lot_number: str
    quantity: float
    effect: float
    recorded_by: str
    patient: str | None = Field(description="the patient's pseudonym (a keyed HMAC of the health card)")
    prescription_id: str | None
    counterparty: str | None
    reason: str | None
    document_number: str | None
    reverses: str | None


class EventOut(BaseModel):
    at: datetime
    by: str
    action: str
    from_state: str
    to_state: str
    comment: str | None
    assignee: str | None
    recorded: bool


class CaseOut(BaseModel):
    flag_id: str
    status: str
    assignee: str | None
    severity: str
    score: float
    rank_score: float
    detectors: str
    reason: str
    messages: list[dict[str, Any]] | None = Field(None, description=MESSAGES_DOC)
    subject: str
    subject_id: str
    facility_code: str | None
    region: str | None
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[str]
    hits: list[HitOut]
    evidence: list[EvidenceOut]
    timeline: list[EventOut]


class ActionIn(BaseModel):
    action: str = Field(description=f"one of {', '.join(ACTIONS)}")
    comment: str | None = Field(None, description="why; required for a comment")
    assignee: str | None = Field(None, description="user name of the auditor, for assign")


@router.get("", response_model=FlagPage)
def flags(request: Request, region: str | None = Query(None),
          facility: str | None = Query(None, description="facility code"),
          detector: str | None = Query(None), severity: str | None = Query(None, description="low, medium or high"),
          status: str | None = Query(None, description="open, assigned, confirmed, dismissed or escalated"),
          limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
          user: User = Depends(reviewer), db: Session = Depends(deps.db)) -> FlagPage:
    """Flags in your scope, most suspicious first. Patients are named by pseudonym; the read is
    audited with the number of patients it names."""
    rows, more = list_flags(db, user, patient_key(request.app.state.settings), region=region, facility=facility,
                            detector=detector, severity=severity, status=status, limit=limit, offset=offset)
    out = [FlagOut(flag_id=r.flag_id, detector=r.detector, score=r.score, rank_score=r.rank_score,
                   severity=r.severity, status=r.status, facility_code=r.facility_code, region=r.region,
                   subject=r.subject, subject_id=r.subject_id, entry_ids=[e for e in r.entry_ids.split(";") if e],
                   reason=r.reason, messages=messages_json(r.messages), created_at=r.created_at) for r in rows]
    patients = len({r.subject_id for r in rows if r.subject == "patient"})
    if patients:
        audit.record(db, request, "flags_read", "flag", None, {"flags": len(rows), "patients": patients, "via": "api"})
        db.commit()
    return FlagPage(flags=out, limit=limit, offset=offset, more=more)


@router.get("/{flag_id}", response_model=CaseOut)
def flag(request: Request, flag_id: str, user: User = Depends(reviewer), db: Session = Depends(deps.db)) -> CaseOut:
    """One flag with its detectors' findings, evidence rows and timeline (patients by pseudonym).
    The read is audited with the number of patients it names."""
    f = flag_in_scope(db, user, flag_id)
    data = case(db, f, user, patient_key(request.app.state.settings))
    _audit_case_read(request, db, f, data)
    return CaseOut(**data)


def _audit_case_read(request: Request, db: Session, f, data: dict) -> None:
    patients = {e["patient"] for e in data["evidence"] if e["patient"]}
    if f.subject == "patient":
        patients.add(data["subject_id"])
    audit.record(db, request, "flag_read", "flag", f.flag_id, {"patients": len(patients), "via": "api"},
                 facility_id=f.facility_id)
    db.commit()


@router.post("/{flag_id}/actions", response_model=CaseOut,
             responses={409: {"model": ErrorBody, "description": "the flag's state does not allow the action"}})
def flag_action(request: Request, flag_id: str, body: ActionIn, user: User = Depends(reviewer),
                db: Session = Depends(deps.db)) -> CaseOut:
    """Assign, confirm, dismiss, escalate or comment. A step the flag's state does not allow is a
    409 naming the state and the action."""
    f = flag_in_scope(db, user, flag_id)
    apply_action(request, db, user, f, body.action, body.comment, body.assignee)
    db.commit()
    return CaseOut(**case(db, f, user, patient_key(request.app.state.settings)))
