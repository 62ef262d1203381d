"""The audit trail, for admins and auditors: who did what, when."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from stock.models import User
from web import audit, deps
from web.access import REVIEWERS, audit_scope, require_roles
from web.api.schemas import MAX_ID, AuditOut

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditOut])
def audit_records(action: str | None = Query(None), object_type: str | None = Query(None),
                  object_id: str | None = Query(None),
                  before: int | None = Query(None, ge=1, le=MAX_ID, description="records older than this id (paging)"),
                  limit: int = Query(100, ge=1, le=1000),
                  user: User = Depends(require_roles(*REVIEWERS)),
                  db: Session = Depends(deps.read_db)) -> list[AuditOut]:
    """Newest first. A regional or facility auditor sees the records of facilities in scope only."""
    rows = audit.records(db, audit_scope(db, user), action=action, object_type=object_type,
                         object_id=object_id, before_id=before, limit=limit)
    return [AuditOut(id=r.id, at=r.at, username=name, action=r.action, object_type=r.object_type,
                     object_id=r.object_id, facility_id=r.facility_id,
                     detail=json.loads(r.detail) if r.detail else None, ip=r.ip) for r, name in rows]
