"""The audit trail: who did what, when, from where.

Every change made through the web app, every login (and failed one), and every read of a
patient's history leaves a record. Records are written in the caller's transaction, so a change
and its record are stored together or not at all.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, make_transient_to_detached

from stock.models import User
from stock import pseudonyms
from stock.pseudonyms import is_pseudonym, pseudonym
from web.access import RecordScope
from web.models import AuditRecord


def client_ip(request: Request | None) -> str | None:
    if request is None or request.client is None:
        return None
    return request.client.host


def row_values(request: Request | None, action: str, object_type: str | None = None,
               object_id: object | None = None, detail: dict[str, Any] | None = None, *,
               facility_id: int | None = None, user: User | None = None,
               patient_key: str | None = None) -> dict[str, Any]:
    """The values of an audit record as ``record`` writes it, for ``insert_rows``. A patient named in
    it is written by pseudonym, under ``patient_key`` or else the key of the request's app."""
    if user is None and request is not None:
        user = getattr(request.state, "user", None)
    if object_type == "patient" and object_id is not None and not is_pseudonym(str(object_id)):
        object_id = pseudonym(str(object_id), _key(request, patient_key))
    if detail:
        detail = {k: (pseudonym(v, _key(request, patient_key)) if k in PATIENT_FIELDS and isinstance(v, str) else v)
                  for k, v in detail.items()}
    return {
        "at": datetime.now(timezone.utc),
        "user_id": user.id if user is not None else None,
        "action": action,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id)[:200],
        "facility_id": facility_id,
        "detail": json.dumps(detail, sort_keys=True, default=str, ensure_ascii=False) if detail else None,
        "ip": client_ip(request),
    }


PATIENT_FIELDS = frozenset({"health_card_id", "health_card", "card", "patient"})
"""Detail fields that name a patient: written as the patient's pseudonym (stock.pseudonyms), as is
the object id of a record about a patient. The trail says which patient was read, never the card."""


def _key(request: Request | None, given: str | None) -> str:
    if given:
        return given
    if request is None:
        raise ValueError("an audit record naming a patient outside a request needs the patient key")
    return pseudonyms.patient_key(request.app.state.settings)


def insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write audit records from ``row_values`` in one statement, for callers that need nothing
    back (the API writes one per dispense: one round trip for all of a transaction's). The caller
    commits."""
    if rows:
        session.flush()
        session.connection().execute(_INSERT, rows)


def record(session: Session, request: Request | None, action: str, object_type: str | None = None,
           object_id: object | None = None, detail: dict[str, Any] | None = None, *,
           facility_id: int | None = None, user: User | None = None,
           patient_key: str | None = None) -> AuditRecord:
    """Add an audit record; ``user`` defaults to the request's user. The caller commits."""
    values = row_values(request, action, object_type, object_id, detail, facility_id=facility_id, user=user,
                        patient_key=patient_key)
    row = AuditRecord(**values)
    # Inserted by one Core statement rather than the unit of work (a record is written on every
    # change, so its cost is paid on every dispense), after whatever the caller left to flush.
    session.flush()
    row.id = session.connection().execute(_INSERT, values).inserted_primary_key[0]
    make_transient_to_detached(row)
    session.add(row)
    return row


_INSERT = insert(AuditRecord.__table__)


def records(session: Session, scope: RecordScope, *, action: str | None = None,
            object_type: str | None = None, object_id: str | None = None, user_id: int | None = None,
            since: datetime | None = None, until: datetime | None = None,
            limit: int = 100, before_id: int | None = None) -> list[tuple[AuditRecord, str | None]]:
    """Records newest first, each with its user's name, limited to what ``scope`` (from
    ``web.access.audit_scope``, the one place that decides it) lets the reader see. ``since`` and
    ``until`` bound ``at`` (until exclusive); ``before_id`` pages back from a record's id."""
    stmt = (select(AuditRecord, User.username).outerjoin(User, User.id == AuditRecord.user_id)
            .order_by(AuditRecord.id.desc()).limit(limit))
    if scope.facility_ids is not None:
        placed = AuditRecord.facility_id.in_(scope.facility_ids)
        stmt = stmt.where(placed | AuditRecord.facility_id.is_(None) if scope.include_unplaced else placed)
    elif not scope.include_unplaced:
        stmt = stmt.where(AuditRecord.facility_id.is_not(None))
    if action:
        stmt = stmt.where(AuditRecord.action == action)
    if object_type:
        stmt = stmt.where(AuditRecord.object_type == object_type)
    if object_id:
        stmt = stmt.where(AuditRecord.object_id == object_id)
    if user_id is not None:
        stmt = stmt.where(AuditRecord.user_id == user_id)
    if since is not None:
        stmt = stmt.where(AuditRecord.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.at < until)
    if before_id is not None:
        stmt = stmt.where(AuditRecord.id < before_id)
    return [(r, name) for r, name in session.execute(stmt)]


__all__ = ["record", "row_values", "insert_rows", "records", "client_ip"]
