"""The audit trail page, for admins and auditors: who did what, when, newest first.

What a reader may see is decided by ``web.access.audit_scope``, the same rule the JSON API
(/api/v1/audit) follows: a national reader sees every record, anyone else the records of the
facilities in their scope only. Filters narrow that (user, action, a range of days, one facility
in scope); paging walks back by record id, which stays fast however long the trail grows. Days
run midnight to midnight in the default zone; each time is shown in its facility's zone.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.models import Facility, User
from web import audit, deps
from web.access import REVIEWERS, audit_scope, require_roles, scope_of, visible_facilities
from web.models import AuditRecord
from web.templating import gettext, render, wants_fragment

router = APIRouter(prefix="/audit", include_in_schema=False)

PAGE_SIZE = 50
FILTERS = ("user", "action", "since", "until", "facility")
MSG_BAD_DATE = "Enter a date as YYYY-MM-DD."
MSG_DATES_REVERSED = "The end date comes before the start date."
MSG_NO_SUCH_USER = "No user has this name."

reader = require_roles(*REVIEWERS)


def _day(lang: str, text: str) -> tuple[date | None, str | None]:
    if not text:
        return None, None
    try:
        return date.fromisoformat(text), None
    except ValueError:
        return None, gettext(lang, MSG_BAD_DATE)


def _detail(raw: str | None) -> list[tuple[str, str]]:
    """A record's detail as (what, value) lines; a change shows as "old → new"."""
    if not raw:
        return []
    try:
        detail = json.loads(raw)
    except ValueError:
        return [("", raw)]
    if not isinstance(detail, dict):
        return [("", json.dumps(detail, ensure_ascii=False))]

    def text(value) -> str:
        if value is None:
            return "—"
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    lines = []
    for key, value in detail.items():
        if isinstance(value, dict) and set(value) == {"old", "new"}:
            lines.append((key, f"{text(value['old'])} → {text(value['new'])}"))
        else:
            lines.append((key, text(value)))
    return lines


@router.get("")
def trail(request: Request, before: int | None = Query(None, ge=1), user: User = Depends(reader),
          db: Session = Depends(deps.read_db)):
    """The records the reader may see, newest first, filtered and paged; htmx asks for the table alone."""
    lang = request.state.lang
    q = request.query_params
    filters = {k: (q.get(k) or "").strip()[:100] for k in FILTERS}
    scope = audit_scope(db, user, filters["facility"] or None)  # a facility outside the scope: 403
    errors: dict[str, str] = {}
    since, errors["since"] = _day(lang, filters["since"])
    until, errors["until"] = _day(lang, filters["until"])
    if since and until and until < since:
        errors["until"] = gettext(lang, MSG_DATES_REVERSED)
    user_id = None
    if filters["user"]:
        user_id = db.scalar(select(User.id).where(User.username == filters["user"]))
        if user_id is None:
            errors["user"] = gettext(lang, MSG_NO_SUCH_USER)
    errors = {k: v for k, v in errors.items() if v}

    rows, more = [], False
    if not errors:
        zone = ZoneInfo(request.app.state.settings.default_timezone)
        start = datetime.combine(since, time(0), zone).astimezone(timezone.utc) if since else None
        end = datetime.combine(until + timedelta(days=1), time(0), zone).astimezone(timezone.utc) if until else None
        found = audit.records(db, scope, action=filters["action"] or None, user_id=user_id, since=start,
                              until=end, before_id=before, limit=PAGE_SIZE + 1)
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        places = {f.id: f for f in db.scalars(select(Facility).where(
            Facility.id.in_({r.facility_id for r, _n in found if r.facility_id is not None})))}
        for r, name in found:
            fac = places.get(r.facility_id)
            rows.append({"id": r.id, "at": r.at, "tz": fac.timezone if fac else None, "username": name,
                         "action": r.action, "object_type": r.object_type or "", "object_id": r.object_id or "",
                         "facility": fac.code if fac else "", "detail": _detail(r.detail), "ip": r.ip or ""})
    query_string = urlencode({k: v for k, v in filters.items() if v})
    ctx = {"rows": rows, "more": more, "before": before, "filters": filters, "errors": errors,
           "query_string": query_string, "national": scope_of(user).kind == "national"}
    if wants_fragment(request):
        response = render(request, "audit/_records.html", ctx, status_code=422 if errors else 200)
    else:
        ctx["facilities"] = [(f.code, f"{f.code} · {f.name}") for f in visible_facilities(db, user)]
        # The actions the trail holds, for the filter's suggestions.
        ctx["actions"] = list(db.scalars(select(AuditRecord.action).distinct().order_by(AuditRecord.action)))
        response = render(request, "audit/trail.html", ctx, status_code=422 if errors else 200)
    response.headers["Vary"] = "HX-Request"
    return response
