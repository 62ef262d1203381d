"""Who the caller is, as the API sees them."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from stock.models import Facility, User
from web import deps
from web.access import current_user, scope_of
from web.api.schemas import MeOut, ScopeOut

router = APIRouter(tags=["me"])


@router.get("/me", response_model=MeOut)
def me(user: User = Depends(current_user), db: Session = Depends(deps.read_db)) -> MeOut:
    """The caller's name, role, language and scope (one facility, a region, or national)."""
    scope = scope_of(user)
    facility = db.get(Facility, scope.facility_id).code if scope.facility_id is not None else None
    return MeOut(username=user.username, display_name=user.display_name, role=user.role,
                 language=user.language, scope=ScopeOut(kind=scope.kind, facility=facility, region=scope.region))
