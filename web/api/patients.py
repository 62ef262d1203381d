"""A patient's dispensing history: for auditors and admins, within their scope, every read audited.

A health-card number never travels in a URL (URLs end up in access logs, proxies' logs and
browsers' histories): the patient is named in the path by pseudonym, as flags and stock cards name
them (``GET /patients/{patient}/dispensings``), or by card in the body of a POST
(``POST /patients/dispensings``). A card put in the path is refused without being looked up.
"""

from __future__ import annotations

import threading
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import queries, rules
from stock.errors import InvalidEntry
from stock.models import Patient, User
from stock.pseudonyms import is_pseudonym, patient_key, pseudonym
from web import audit, deps
from web.access import NotFound, REVIEWERS, require_roles, scope_of, visible_facility_ids
from web.api.schemas import PatientDispensingOut

router = APIRouter(prefix="/patients", tags=["patients"])

MAX_ROWS = 5000


class HistoryQuery(BaseModel):
    """Whose history, from when, how many rows."""

    model_config = ConfigDict(extra="forbid")

    health_card_id: str = Field(min_length=1, max_length=rules.MAX_TEXT, description="the patient's health card")
    since: AwareDatetime | None = Field(None, description="from this time (with zone)")
    limit: int = Field(500, ge=1, le=MAX_ROWS)


class PseudonymIndex:
    """Health cards by pseudonym under one key, for naming a patient in a URL without their card.

    A pseudonym cannot be turned back into a card, so the register is hashed once per process and
    kept in memory (never stored: a copy of the database must not link pseudonyms to cards);
    patients registered since are hashed when a pseudonym is not found."""

    def __init__(self, key: str):
        self.key = key
        self.cards: dict[str, str] = {}
        self.last_id = 0
        self.lock = threading.Lock()

    def card(self, db: Session, name: str) -> str | None:
        with self.lock:
            card = self.cards.get(name)
            if card is None:
                rows = db.execute(select(Patient.id, Patient.health_card_id).where(Patient.id > self.last_id)
                                  .order_by(Patient.id)).all()
                for pid, c in rows:
                    self.cards[pseudonym(c, self.key)] = c
                    self.last_id = max(self.last_id, pid)
                card = self.cards.get(name)
        return card


def _index(request: Request) -> PseudonymIndex:
    key = patient_key(request.app.state.settings)
    index = getattr(request.app.state, "pseudonym_index", None)
    if index is None or index.key != key:
        index = request.app.state.pseudonym_index = PseudonymIndex(key)
    return index


@router.get("/{patient}/dispensings", response_model=list[PatientDispensingOut])
def dispensings(request: Request, patient: str,
                since: datetime | None = Query(None, description="from this time (with zone)"),
                limit: int = Query(500, ge=1, le=MAX_ROWS),
                user: User = Depends(require_roles(*REVIEWERS)),
                db: Session = Depends(deps.db)) -> list[PatientDispensingOut]:
    """What the patient named by pseudonym (P-..., as in flags and stock cards) was given, at every
    facility in your scope, newest first. A health card is not accepted here: POST it to
    /patients/dispensings. The read is recorded in the audit trail, whatever it finds."""
    if not is_pseudonym(patient):
        raise InvalidEntry("name the patient by pseudonym (P-...) in the URL, or send the health card in the "
                           "body of POST /api/v1/patients/dispensings", field="patient")
    if since is not None and since.tzinfo is None:
        raise InvalidEntry("since must carry a time zone, e.g. 2026-03-01T00:00:00Z", field="since")
    card = _index(request).card(db, patient)
    if card is None:
        audit.record(db, request, "patient_history_read", "patient", patient, {"found": False, "via": "api"})
        db.commit()
        raise NotFound(f"no patient with pseudonym {patient}", field="patient")
    return _history(request, db, user, card, since, limit)


@router.post("/dispensings", response_model=list[PatientDispensingOut])
def dispensings_by_card(request: Request, body: HistoryQuery,
                        user: User = Depends(require_roles(*REVIEWERS)),
                        db: Session = Depends(deps.db)) -> list[PatientDispensingOut]:
    """What the patient with this health card was given, at every facility in your scope, newest
    first (the card in the body, so that it is in no URL). The read is recorded in the audit trail,
    whatever it finds."""
    card = body.health_card_id.strip()
    if db.scalar(select(Patient.id).where(Patient.health_card_id == card)) is None:
        # Asking whether a card exists is itself a read of patient data: recorded too.
        audit.record(db, request, "patient_history_read", "patient", card, {"found": False, "via": "api"})
        db.commit()
        raise NotFound("no patient with this health card", field="health_card_id")
    return _history(request, db, user, card, body.since, body.limit)


def _history(request: Request, db: Session, user: User, card: str, since: datetime | None,
             limit: int) -> list[PatientDispensingOut]:
    national = scope_of(user).kind == "national"
    rows = queries.patient_dispensings(db, card, since=since, limit=limit,
                                       facility_ids=None if national else visible_facility_ids(db, user))
    audit.record(db, request, "patient_history_read", "patient", card,
                 {"rows": len(rows), "since": since.isoformat() if since else None, "via": "api"})
    db.commit()
    return [PatientDispensingOut(entry_id=r.entry_id, occurred_at=r.occurred_at, facility=r.facility_code,
                                 item=r.item_code, item_name=r.item_name, lot=r.lot_number, quantity=r.quantity,
                                 prescription_id=r.prescription_id, recorded_by=r.recorded_by,
                                 reversed_by=r.reversed_by) for r in rows]
