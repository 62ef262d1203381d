"""A patient's dispensing history: for auditors and admins, within their scope, every read audited."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import queries
from stock.errors import InvalidEntry
from stock.models import Patient, User
from web import audit, deps
from web.access import NotFound, require_roles, scope_of, visible_facility_ids
from web.api.schemas import PatientDispensingOut

router = APIRouter(prefix="/patients", tags=["patients"])


@router.get("/{health_card_id}/dispensings", response_model=list[PatientDispensingOut])
def dispensings(request: Request, health_card_id: str,
                since: datetime | None = Query(None, description="from this time (with zone)"),
                limit: int = Query(500, ge=1, le=5000),
                user: User = Depends(require_roles("auditor", "admin")),
                db: Session = Depends(deps.db)) -> list[PatientDispensingOut]:
    """What the patient was given, at every facility in your scope, newest first. The read is
    recorded in the audit trail, whatever it finds."""
    if since is not None and since.tzinfo is None:
        raise InvalidEntry("since must carry a time zone, e.g. 2026-03-01T00:00:00Z", field="since")
    if db.scalar(select(Patient.id).where(Patient.health_card_id == health_card_id)) is None:
        # Asking whether a card exists is itself a read of patient data: recorded too.
        audit.record(db, request, "patient_history_read", "patient", health_card_id, {"found": False, "via": "api"})
        db.commit()
        raise NotFound(f"no patient with health card {health_card_id!r}", field="health_card_id")
    national = scope_of(user).kind == "national"
    rows = queries.patient_dispensings(db, health_card_id, since=since, limit=limit,
                                       facility_ids=None if national else visible_facility_ids(db, user))
    audit.record(db, request, "patient_history_read", "patient", health_card_id,
                 {"rows": len(rows), "since": since.isoformat() if since else None, "via": "api"})
    db.commit()
    return [PatientDispensingOut(entry_id=r.entry_id, occurred_at=r.occurred_at, facility=r.facility_code,
                                 item=r.item_code, item_name=r.item_name, lot=r.lot_number, quantity=r.quantity,
                                 prescription_id=r.prescription_id, recorded_by=r.recorded_by,
                                 reversed_by=r.reversed_by) for r in rows]
