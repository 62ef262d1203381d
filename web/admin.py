"""Admin pages: users (list, disable), facilities (list) and the ledger's verification status.

Admins only (national or not, an admin's pages cover what their scope shows). Verifying the ledger
re-walks every facility's hash chain and compares cached balances with the ledger, which can take
a while on a large ledger, so it runs only when asked (a button) and its result is audited.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import balances, chain
from stock.models import Facility, User
from web import audit, auth, deps
from web.access import NotFound, require_roles, scope_of, visible_facilities
from web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)
admin = require_roles("admin")


def _scope_label(user: User, codes: dict[int, str]) -> tuple[str, str]:
    if user.facility_id is not None:
        return "facility", codes.get(user.facility_id, "?")
    if user.region:
        return "region", user.region
    return "national", ""


@router.get("/users")
def users(request: Request, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    """Every user in the admin's scope, with role, scope and whether active."""
    facilities = visible_facilities(db, user)
    codes = {f.id: f.code for f in facilities}
    scope = scope_of(user)
    rows = []
    for u in db.scalars(select(User).order_by(User.username)):
        if scope.kind != "national" and u.facility_id not in codes and u.region != scope.region:
            continue
        kind, where = _scope_label(u, codes)
        rows.append({"username": u.username, "name": u.display_name or "", "role": u.role, "scope_kind": kind,
                     "scope": where, "active": u.active})
    return render(request, "admin/users.html", {"users": rows})


@router.post("/users/{username}/disable")
def disable_user(request: Request, username: str, user: User = Depends(admin), db: Session = Depends(deps.db)):
    """Disable a user: their logins end at once and their API tokens stop working."""
    target = auth.user_by_username(db, username)
    if target is None:
        raise NotFound("no such user", field="username")
    if target.facility_id is not None:
        fac = db.get(Facility, target.facility_id)
        if fac is not None and not scope_of(user).allows(fac):
            raise NotFound("no such user", field="username")
    if target.id == user.id:
        from web.access import Forbidden

        raise Forbidden("you cannot disable yourself", field="username")
    target.active = False
    ended = auth.end_user_sessions(db, target.id)
    audit.record(db, request, "user_disabled", "user", username, {"sessions_ended": ended, "via": "web"},
                 facility_id=target.facility_id)
    db.commit()
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/facilities")
def facilities(request: Request, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    return render(request, "admin/facilities.html", {"facilities": visible_facilities(db, user)})


@router.get("/ledger")
def ledger(request: Request, user: User = Depends(admin)):
    """The verification page: nothing runs until the button is pressed."""
    return render(request, "admin/ledger.html", {"result": None})


@router.post("/ledger/verify")
def verify(request: Request, user: User = Depends(admin), db: Session = Depends(deps.db)):
    """Re-walk every hash chain and compare balances with the ledger; show the result per facility."""
    report = chain.verify(db)
    drifts = balances.drift(db)
    allowed = {f.code for f in visible_facilities(db, user)}
    per: dict[str, dict] = {code: {"code": code, "breaks": [], "drifts": []} for code in sorted(allowed)}
    for b in report.breaks:
        if b.facility_code in per:
            per[b.facility_code]["breaks"].append(str(b))
    for d in drifts:
        if d.facility_code in per:
            per[d.facility_code]["drifts"].append(str(d))
    rows = list(per.values())
    ok = all(not r["breaks"] and not r["drifts"] for r in rows)
    audit.record(db, request, "ledger_verified", "ledger", None,
                 {"ok": ok, "entries": report.entries, "breaks": len(report.breaks), "drifts": len(drifts)})
    db.commit()
    return render(request, "admin/ledger.html",
                  {"result": {"ok": ok, "entries": report.entries, "facilities": rows}})
