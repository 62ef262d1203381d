"""Admin pages that change who may use Dawa and where: create and edit users (display name, role,
scope, language), enable them again, and create and edit facilities.

A user is created by the same service as ``dawa users create`` (web.admin.service.create_user), with the
same password policy. An admin acts only within their scope (web.access.within_scope): the scope
given to a user must lie inside the admin's, and the facilities offered are those the admin sees.
Facilities are national master data: only a national admin creates or edits them. Every change is
audited with what it was before.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.masterdata import add_facility
from stock.models import FACILITY_KINDS, LANGUAGES, ROLES, Facility, User
from web import audit, auth, deps, words
from web.access import (ADMINS, FACILITY_BOUND, NotFound, require_national, require_roles, scope_of, user_in_scope,
                        visible_facilities, within_scope)
from web.admin.service import USERNAME_RE, create_user
from web.templating import LANGUAGE_NAMES, gettext, render

router = APIRouter(prefix="/admin", include_in_schema=False)
admin = require_roles(*ADMINS)

MSG_USERNAME = "A user name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit."
MSG_USERNAME_TAKEN = "This user name is already taken."
MSG_CHOOSE = "Choose one of the list."
MSG_ONE_SCOPE = "Choose a facility or a region, not both."
MSG_NEEDS_FACILITY = "This role works at one facility: choose it."
MSG_OWN_ROLE = "You cannot change your own role or scope."
MSG_PASSWORD = ("Choose another password: at least 12 characters, without the user name, and not a common or "
                "breached password.")
MSG_REQUIRED = "Required."
MSG_CODE = "A code is 1 to 32 letters, digits, '.', '_' or '-'."
MSG_CODE_TAKEN = "This code is already taken."


def _t(request: Request, message: str, **params) -> str:
    return gettext(request.state.lang, message, **params)


def _regions(db: Session, user: User) -> list[str]:
    return sorted({f.region for f in visible_facilities(db, user)})


# --- users -------------------------------------------------------------------------------------

def _user_page(request: Request, db: Session, user: User, values: dict, *, target: User | None = None,
               errors: dict | None = None, status_code: int = 200):
    lang = request.state.lang
    ctx = {"values": values, "errors": errors or {}, "target": target,
           "roles": list(words.labels(lang, words.ROLE).items()),
           "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
           "facilities": [(f.code, f"{f.code} · {f.name}") for f in visible_facilities(db, user)],
           "regions": [(r, r) for r in _regions(db, user)],
           "national": scope_of(user).kind == "national"}
    return render(request, "admin/user_form.html", ctx, status_code=status_code)


def _user_fields(form: dict[str, str]) -> dict:
    return {k: str(form.get(k) or "").strip()[:200]
            for k in ("username", "display_name", "role", "facility", "region", "language")}


def _check_scope(request: Request, db: Session, actor: User, values: dict, errors: dict) -> Facility | None:
    """The facility the form names, after checking the scope lies inside ``actor``'s; problems go
    into ``errors`` under their field, never saying what lies outside the actor's scope."""
    if values["role"] not in ROLES:
        errors["role"] = _t(request, MSG_CHOOSE)
    if values["language"] and values["language"] not in LANGUAGES:
        errors["language"] = _t(request, MSG_CHOOSE)
    if values["facility"] and values["region"]:
        errors["region"] = _t(request, MSG_ONE_SCOPE)
        return None
    facility = None
    if values["facility"]:
        facility = db.scalars(select(Facility).where(Facility.code == values["facility"])).first()
        if facility is None or not scope_of(actor).allows(facility):
            errors["facility"] = _t(request, MSG_CHOOSE)
            return None
    elif values["role"] in FACILITY_BOUND:
        errors["facility"] = _t(request, MSG_NEEDS_FACILITY)
    if values["region"] and values["region"] not in _regions(db, actor):
        errors["region"] = _t(request, MSG_CHOOSE)
    probe = User(facility_id=facility.id if facility else None, region=values["region"] or None)
    if "facility" not in errors and "region" not in errors and not within_scope(db, actor, probe):
        errors["region"] = _t(request, MSG_CHOOSE)  # a national scope, offered to national admins only
    return facility


@router.get("/users/new")
def new_user(request: Request, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    return _user_page(request, db, user, {"role": "pharmacist", "language": ""})


@router.post("/users/new")
def create(request: Request, user: User = Depends(admin), db: Session = Depends(deps.db),
           form: dict[str, str] = Depends(deps.form_fields)):
    """Create a user within the admin's scope, with a password the policy accepts; audited."""
    values = _user_fields(form)
    password = str(form.get("password") or "")
    errors: dict[str, str] = {}
    if not USERNAME_RE.match(values["username"]):
        errors["username"] = _t(request, MSG_USERNAME)
    elif auth.user_by_username(db, values["username"]) is not None:
        errors["username"] = _t(request, MSG_USERNAME_TAKEN)
    _check_scope(request, db, user, values, errors)
    if "username" not in errors and auth.password_problem(password, values["username"]):
        errors["password"] = _t(request, MSG_PASSWORD)
    if errors:
        return _user_page(request, db, user, values, errors=errors, status_code=422)
    create_user(db, values["username"], values["role"], password, facility=values["facility"] or None,
                region=values["region"] or None, display_name=values["display_name"] or None,
                language=values["language"] or None, web=request.app.state.settings.web, request=request)
    db.commit()
    return RedirectResponse("/admin/users", status_code=303)


def _values_of(target: User, db: Session) -> dict:
    code = db.scalar(select(Facility.code).where(Facility.id == target.facility_id)) if target.facility_id else ""
    return {"username": target.username, "display_name": target.display_name or "", "role": target.role,
            "facility": code or "", "region": target.region or "", "language": target.language or ""}


@router.get("/users/{username}")
def edit_user(request: Request, username: str, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    target = user_in_scope(db, user, username)
    return _user_page(request, db, user, _values_of(target, db), target=target)


@router.post("/users/{username}")
def update_user(request: Request, username: str, user: User = Depends(admin), db: Session = Depends(deps.db),
                form: dict[str, str] = Depends(deps.form_fields)):
    """Change a user's display name, role, scope or language, within the admin's scope; audited
    with the old and the new values."""
    target = user_in_scope(db, user, username, for_update=True)
    before = _values_of(target, db)
    values = {**_user_fields(form), "username": target.username}
    errors: dict[str, str] = {}
    facility = _check_scope(request, db, user, values, errors)
    if target.id == user.id and (values["role"], values["facility"], values["region"]) != (
            before["role"], before["facility"], before["region"]):
        errors["role"] = _t(request, MSG_OWN_ROLE)
    if errors:
        return _user_page(request, db, user, values, target=target, errors=errors, status_code=422)
    changes = {k: {"old": before[k] or None, "new": values[k] or None} for k in before if before[k] != values[k]}
    if changes:
        target.display_name = values["display_name"] or None
        target.role = values["role"]
        target.facility_id = facility.id if facility else None
        target.region = values["region"] or None
        target.language = values["language"] or None
        audit.record(db, request, "user_updated", "user", target.username, {**changes, "via": "web"},
                     facility_id=target.facility_id)
        db.commit()
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users/{username}/enable")
def enable_user(request: Request, username: str, user: User = Depends(admin), db: Session = Depends(deps.db)):
    """Let a disabled user log in again (with the password they had)."""
    target = user_in_scope(db, user, username, for_update=True)
    if not target.active:
        target.active = True
        audit.record(db, request, "user_enabled", "user", username, {"via": "web"}, facility_id=target.facility_id)
        db.commit()
    return RedirectResponse("/admin/users", status_code=303)


# --- facilities --------------------------------------------------------------------------------

def _facility_page(request: Request, values: dict, *, target: Facility | None = None, errors: dict | None = None,
                   status_code: int = 200):
    lang = request.state.lang
    return render(request, "admin/facility_form.html",
                  {"values": values, "target": target, "errors": errors or {},
                   "kinds": list(words.labels(lang, words.FACILITY_KIND).items())}, status_code=status_code)


def _facility_fields(request: Request, form: dict[str, str], errors: dict) -> dict:
    values = {k: str(form.get(k) or "").strip()[:200] for k in ("code", "name", "region", "kind")}
    for name in ("name", "region"):
        if not values[name]:
            errors[name] = _t(request, MSG_REQUIRED)
    if values["kind"] not in FACILITY_KINDS:
        errors["kind"] = _t(request, MSG_CHOOSE)
    return values


@router.get("/facilities/new")
def new_facility(request: Request, user: User = Depends(admin)):
    require_national(user, "facilities")
    return _facility_page(request, {"kind": "health_center"})


@router.post("/facilities/new")
def create_facility(request: Request, user: User = Depends(admin), db: Session = Depends(deps.db),
                    form: dict[str, str] = Depends(deps.form_fields)):
    """A new facility (national admins only); its hash chain starts empty. Audited."""
    require_national(user, "facilities")
    errors: dict[str, str] = {}
    values = _facility_fields(request, form, errors)
    if not USERNAME_RE.match(values["code"]) or len(values["code"]) > 32 or "@" in values["code"]:
        errors["code"] = _t(request, MSG_CODE)
    elif db.scalar(select(Facility.id).where(Facility.code == values["code"])) is not None:
        errors["code"] = _t(request, MSG_CODE_TAKEN)
    if errors:
        return _facility_page(request, values, errors=errors, status_code=422)
    fac = add_facility(db, values["code"], values["name"], values["region"], values["kind"])
    audit.record(db, request, "facility_created", "facility", fac.code,
                 {"name": fac.name, "region": fac.region, "kind": fac.kind, "via": "web"}, facility_id=fac.id)
    db.commit()
    return RedirectResponse("/admin/facilities", status_code=303)


def _facility(db: Session, code: str, *, for_update: bool = False) -> Facility:
    stmt = select(Facility).where(Facility.code == code)
    fac = db.scalars(stmt.with_for_update() if for_update else stmt).first()
    if fac is None:
        raise NotFound("no such facility", field="facility")
    return fac


@router.get("/facilities/{code}")
def edit_facility(request: Request, code: str, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    require_national(user, "facilities")
    fac = _facility(db, code)
    return _facility_page(request, {"code": fac.code, "name": fac.name, "region": fac.region, "kind": fac.kind},
                          target=fac)


@router.post("/facilities/{code}")
def update_facility(request: Request, code: str, user: User = Depends(admin), db: Session = Depends(deps.db),
                    form: dict[str, str] = Depends(deps.form_fields)):
    """Change a facility's name, region or kind (national admins only); audited, old and new."""
    require_national(user, "facilities")
    fac = _facility(db, code, for_update=True)
    errors: dict[str, str] = {}
    values = {**_facility_fields(request, form, errors), "code": fac.code}
    if errors:
        return _facility_page(request, values, target=fac, errors=errors, status_code=422)
    changes = {k: {"old": getattr(fac, k), "new": values[k]} for k in ("name", "region", "kind")
               if getattr(fac, k) != values[k]}
    if changes:
        for k, change in changes.items():
            setattr(fac, k, change["new"])
        audit.record(db, request, "facility_updated", "facility", fac.code, {**changes, "via": "web"},
                     facility_id=fac.id)
        db.commit()
    return RedirectResponse(f"/admin/facilities#facility-{quote(fac.code, safe='')}", status_code=303)


__all__ = ["router"]
