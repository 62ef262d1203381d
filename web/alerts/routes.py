"""In-app notifications: a user's own list, and acknowledging one.

Every logged-in user may see and acknowledge their own notifications, whatever their role; a
notification of someone else is answered as if it did not exist (404), so ids reveal nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.models import User
from web import audit, deps
from web.access import NotFound, current_user
from web.alerts.models import Notification
from web.alerts.notices import shown
from web.templating import render

router = APIRouter(include_in_schema=False)

ACKNOWLEDGED_SHOWN = 50


@router.get("/notifications")
def notifications(request: Request, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    """Unacknowledged notifications first (newest first), then the latest acknowledged ones."""
    mine = select(Notification).where(Notification.user_id == user.id).order_by(Notification.id.desc())
    unread = list(db.scalars(mine.where(Notification.acknowledged_at.is_(None))))
    read = list(db.scalars(mine.where(Notification.acknowledged_at.is_not(None)).limit(ACKNOWLEDGED_SHOWN)))
    lang = getattr(request.state, "lang", None)
    return render(request, "notifications.html", {"unread": [shown(n, lang) for n in unread],
                                                  "read": [shown(n, lang) for n in read]})


@router.post("/notifications/{notification_id}/ack")
def acknowledge(request: Request, notification_id: int, user: User = Depends(current_user),
                db: Session = Depends(deps.db)):
    note = db.get(Notification, notification_id)
    if note is None or note.user_id != user.id:
        raise NotFound("no such notification", field="notification")
    if note.acknowledged_at is None:
        note.acknowledged_at = datetime.now(timezone.utc)
        audit.record(db, request, "notification_acknowledged", "notification", note.id,
                     {"alert_key": note.alert_key}, facility_id=user.facility_id)
        db.commit()
    return RedirectResponse("/notifications", status_code=303)


__all__ = ["router"]
