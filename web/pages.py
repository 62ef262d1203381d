"""The first pages: log in, log out, home, and the language switch."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from stock.models import LANGUAGES, User
from stock.queries import stock_positions
from web import audit, auth, deps, login_throttle
from web.access import current_user, scope_of, visible_facilities
from web.middleware import LANGUAGE_COOKIE_AGE, cookie_options
from web.templating import gettext, render

router = APIRouter(include_in_schema=False)

WRONG_LOGIN = "Wrong username or password."
TOO_MANY = "Too many failed logins. Try again in %(minutes)s minutes."


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only, never another site (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


@router.get("/login")
def login_page(request: Request, next: str = ""):
    if request.state.user is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"error": None, "username": "", "next": safe_next(next)})


@router.post("/login")
def login_submit(request: Request, username: str = Form(""), password: str = Form(""),
                 next: str = Form(""), db: Session = Depends(deps.db)):
    web = request.app.state.settings.web
    ip = audit.client_ip(request) or "unknown"
    typed = username.strip()
    lang = request.state.lang

    def again(error: str, status: int) -> Response:
        return render(request, "login.html", {"error": error, "username": typed, "next": safe_next(next)},
                      status_code=status)

    refusal = login_throttle.login_refusal(db, typed, ip, web)
    if refusal is not None:
        audit.record(db, request, "login_refused", "user", typed, {"by": refusal.by}, user=None)
        db.commit()
        response = again(gettext(lang, TOO_MANY, minutes=refusal.minutes_left()), 429)
        response.headers["Retry-After"] = str(refusal.minutes_left() * 60)
        return response
    user = auth.user_by_username(db, typed) if typed else None
    ok = bool(password) and auth.check_password(user, password, web)
    login_throttle.record_attempt(db, typed, ip, ok)
    if not ok:
        audit.record(db, request, "login_failed", "user", typed, user=None)
        db.commit()
        return again(gettext(lang, WRONG_LOGIN), 401)
    auth.purge_expired(db, web)
    login = auth.start_session(db, user, web, replacing=request.cookies.get(auth.SESSION_COOKIE))
    audit.record(db, request, "login", "user", user.username, user=user, facility_id=user.facility_id)
    db.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(auth.SESSION_COOKIE, login.token,
                        **cookie_options(request, max_age=int(web.session_hours * 3600)))
    return response


@router.post("/logout")
def logout(request: Request, user: User = Depends(current_user), db: Session = Depends(deps.db)):
    token = request.cookies.get(auth.SESSION_COOKIE)
    if token:
        auth.end_session(db, token)
    audit.record(db, request, "logout", "user", user.username, facility_id=user.facility_id)
    db.commit()
    response = RedirectResponse("/login", status_code=303)
    options = cookie_options(request)
    response.delete_cookie(auth.SESSION_COOKIE, path="/", secure=options["secure"], httponly=True,
                           samesite="lax")
    return response


LANDINGS = {
    "auditor": "/flags?status=open,assigned",  # their open cases (web.flags.pages.OPEN_CASES)
    "facility_manager": "/stock",  # stock at a glance: the dashboard of their facility
    "pharmacist": "/pharmacy",  # their pharmacy's counter
    "admin": "/admin/users",
}
"""Where each role starts after logging in, and what the site's root shows them."""


def landing(user: User) -> str:
    return LANDINGS.get(user.role, "/overview")


@router.get("/")
def home(user: User = Depends(current_user)):
    """Each role's landing page (LANDINGS)."""
    return RedirectResponse(landing(user), status_code=303)


@router.get("/overview")
def overview(request: Request, user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    """The facilities in the user's scope and their stock positions at a glance."""
    settings = request.app.state.settings
    facilities = visible_facilities(db, user)
    codes = {f.code for f in facilities}
    today = settings.today()
    scope = scope_of(user)
    own = facilities[0].code if scope.kind == "facility" and facilities else None
    positions = [p for p in stock_positions(db, today=today, months=settings.amc_months, facility_code=own)
                 if p.facility_code in codes] if facilities else []
    return render(request, "home.html", {"facilities": facilities, "positions": positions, "today": today})


@router.post("/language")
def set_language(request: Request, lang: str = Form(""), db: Session = Depends(deps.db)):
    """Switch the language of the pages: kept on the user, or in a cookie before login."""
    if lang not in LANGUAGES:
        return render(request, "error.html",
                      {"status_code": 422, "message": f"language must be one of {', '.join(LANGUAGES)}"},
                      status_code=422)
    user = request.state.user
    if user is not None:
        stored = db.get(User, user.id)
        before = stored.language
        stored.language = lang
        audit.record(db, request, "user_language_changed", "user", stored.username,
                     {"from": before, "to": lang}, facility_id=stored.facility_id)
        db.commit()
    response = RedirectResponse(_back(request), status_code=303)
    response.set_cookie(auth.LANGUAGE_COOKIE, lang,
                        **cookie_options(request, http_only=False, max_age=LANGUAGE_COOKIE_AGE))
    return response


def _back(request: Request) -> str:
    """The page the switch was made on, if it is on this site."""
    referer = request.headers.get("referer")
    if not referer:
        return "/"
    parts = urlsplit(referer)
    if parts.netloc and parts.netloc != request.url.netloc:
        return "/"
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


__all__ = ["router", "safe_next", "LANDINGS", "landing"]
