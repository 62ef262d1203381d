"""The DHIS2 push history: each send of monthly figures to the ministry's DHIS2 server (by `dawa
dhis2 push` or the scheduled job) with the import summary DHIS2 answered, its conflicts listed one
by one, so that a value DHIS2 refused is seen and put right rather than lost in a job's log.

Who may read it is decided in ``web.access`` (national admins and managers).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from stock.models import User
from web import deps
from web.access import require_dhis2_pushes
from web.interop.dhis2_push import recent
from web.templating import render

router = APIRouter(include_in_schema=False)
SHOWN = 50


def _conflicts(text: str | None) -> list[dict]:
    """DHIS2's conflicts as stored: each with the object refused and DHIS2's reason."""
    try:
        rows = json.loads(text) if text else []
    except ValueError:
        return []
    return [{"object": str(c.get("object") or ""), "value": str(c.get("value") or "")}
            for c in rows if isinstance(c, dict)]


@router.get("/dhis2/pushes")
def pushes(request: Request, user: User = Depends(require_dhis2_pushes), db: Session = Depends(deps.read_db)):
    """The latest pushes, newest first, with their counts, conflicts and failures."""
    rows = [{"id": p.id, "at": p.at, "period": p.period, "server": p.server, "pushed_by": p.pushed_by,
             "status": p.status, "sent": p.sent, "imported": p.imported, "updated": p.updated,
             "ignored": p.ignored, "deleted": p.deleted, "conflicts": _conflicts(p.conflicts),
             "message": p.message} for p in recent(db, SHOWN)]
    return render(request, "dhis2/pushes.html", {"pushes": rows})
