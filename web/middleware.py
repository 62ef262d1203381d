"""What runs around every request: security headers, and who is asking plus the CSRF check.

``Identity`` settles, before any route runs, ``request.state.user`` (from the session cookie, or a
personal token on /api/), ``request.state.csrf_token`` (the login's, or a pre-login one bound to a
cookie) and ``request.state.lang``. It then refuses with 403 any state-changing request that does
not carry the matching CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``), whatever
route it is for: requests authenticated by a personal token are the one exception, since a browser
never adds that header on its own.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stock.models import LANGUAGES, User
from web import auth

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_FORM_BYTES = 20 * 1024 * 1024

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}


class SecurityHeaders:
    """Adds the security headers to every response, including errors and static files."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if scope.get("scheme") == "https" and "strict-transport-security" not in headers:
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)


NO_STORE_EXEMPT = ("/static/", "/api/docs")
"""Responses that hold nothing personal (assets, the API's docs) and may be cached; every other
answer (pages, API data, errors) is sent with ``Cache-Control: no-store``."""

MAX_BODY_BYTES = 20 * 1024 * 1024
"""A request body larger than this is refused (413) before any route reads it."""
MAX_JSON_DEPTH = 32
"""JSON nested deeper than this is refused (400): no Dawa document comes near it (a FHIR bundle
is about ten deep), and parsing one far deeper exhausts the parser's stack."""

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """How deeply ``body`` (JSON text, well-formed or not) nests arrays and objects, brackets inside
    strings left out."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


class RequestLimits:
    """Refuses over-large bodies (413) and over-deep JSON (400) before a route runs, and marks every
    answer but static assets ``Cache-Control: no-store`` (pages and API answers hold personal data)."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY_BYTES, max_depth: int = MAX_JSON_DEPTH):
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if not path.startswith(NO_STORE_EXEMPT):
            send = _no_store(send)
        if scope["method"] in UNSAFE_METHODS:
            headers = Headers(scope=scope)
            request = Request(scope)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body:
                await _error(request, 413, MSG_TOO_LARGE, None)(scope, receive, send)
                return
            body, too_big = await _read_body(receive, self.max_body)
            if too_big:
                await _error(request, 413, MSG_TOO_LARGE, None)(scope, receive, send)
                return
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if (ctype.endswith("json") or ctype == "") and json_depth(body) > self.max_depth:
                await _error(request, 400, f"the JSON is nested more than {self.max_depth} deep",
                             None)(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _no_store(send: Send) -> Send:
    async def send_no_store(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["cache-control"] = "no-store"
        await send(message)

    return send_no_store


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


@dataclass
class Identity:
    user: User | None = None
    via: str | None = None  # "session", "token" or None
    csrf_token: str | None = None
    lang: str = "en"
    set_cookies: list[tuple[str, str, dict]] = field(default_factory=list)
    refusal: Response | None = None


class IdentityMiddleware:
    """Sets request.state.user / csrf_token / lang / auth_via and enforces CSRF on every route."""

    def __init__(self, app: ASGIApp, *, skip_prefixes: tuple[str, ...] = ("/static/", "/api/docs/assets/")):
        self.app = app
        self.skip_prefixes = skip_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        path = scope.get("path", "")
        request = Request(scope)
        if path.startswith(self.skip_prefixes) or path == "/healthz":
            state.update(user=None, csrf_token=None, auth_via=None, lang="en", web_session_id=None)
            await self.app(scope, receive, send)
            return
        app_state = scope["app"].state
        identity = _checked_token_identity(app_state, request, path)
        if identity is None:  # the database must be read: in a worker thread
            identity = await run_in_threadpool(_resolve, app_state, request, path)
        state.update(user=identity.user, csrf_token=identity.csrf_token, auth_via=identity.via,
                     lang=identity.lang)
        if identity.refusal is not None:
            await identity.refusal(scope, receive, send)
            return

        # Token requests carry no ambient credential, nor do anonymous API requests (refused
        # with 401 by the route): only cookie-borne logins and forms need the CSRF check.
        needs_csrf = identity.via == "session" or (identity.via is None and not is_api(path))
        if scope["method"] in UNSAFE_METHODS and needs_csrf:
            supplied = request.headers.get("x-csrf-token")
            body: bytes | None = None
            if not supplied and _is_form(request.headers):
                body, too_big = await _read_body(receive)
                if too_big:
                    await _error(request, 413, MSG_FORM_TOO_LARGE, None)(scope, receive, send)
                    return
                supplied = await _form_field(scope, body, "csrf_token")
            if not auth.tokens_equal(supplied, identity.csrf_token):
                message = MSG_FORM_EXPIRED if identity.csrf_token else MSG_NO_COOKIES
                await _error(request, 403, message, "csrf_token")(scope, receive, send)
                return
            if body is not None:
                receive = _replay(body, receive)

        await self.app(scope, receive, _cookie_setter(send, identity.set_cookies))


def _is_form(headers: Headers) -> bool:
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype in ("application/x-www-form-urlencoded", "multipart/form-data")


async def _read_body(receive: Receive, limit: int = MAX_FORM_BYTES) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _form_field(scope: Scope, body: bytes, name: str) -> str | None:
    headers = Headers(scope=scope)
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(name)
        return values[0] if values else None
    request = Request(scope, _replay(body, _no_more))
    try:
        form = await request.form()
        value = form.get(name)
        return value if isinstance(value, str) else None
    except Exception:  # noqa: BLE001 - a malformed body simply carries no token
        return None
    finally:
        await request.close()


async def _no_more() -> Message:
    return {"type": "http.disconnect"}


MSG_TOO_LARGE = "the request is too large"
MSG_FORM_TOO_LARGE = "the form is too large"
MSG_FORM_EXPIRED = "the form had expired or did not come from this site: reload the page and try again"
MSG_NO_COOKIES = "cookies are needed to send forms"


def _error(request: Request, status: int, message: str, field_name: str | None) -> Response:
    if is_api(request.url.path):
        return JSONResponse({"error": {"field": field_name, "message": message}}, status_code=status)
    try:
        from web.templating import render

        return render(request, "error.html", {"status_code": status, "message": message}, status_code=status)
    except Exception:  # noqa: BLE001 - the page must not hide the refusal
        return PlainTextResponse(message, status_code=status)


def _cookie_setter(send: Send, cookies: list[tuple[str, str, dict]]) -> Send:
    if not cookies:
        return send

    async def send_with_cookies(message: Message) -> None:
        if message["type"] == "http.response.start":
            response = Response()
            for name, value, options in cookies:
                response.set_cookie(name, value, **options)
            headers = MutableHeaders(scope=message)
            for key, value in response.raw_headers:
                if key == b"set-cookie":
                    headers.append("set-cookie", value.decode("latin-1"))
        await send(message)

    return send_with_cookies


def cookie_options(request: Request, *, http_only: bool = True, max_age: int | None = None) -> dict:
    return {"httponly": http_only, "samesite": "lax", "secure": request.url.scheme == "https",
            "path": "/", "max_age": max_age}


def _bearer(request: Request, path: str) -> str | None:
    """The personal token of an API request's Authorization header ('' for a malformed one), or
    None when there is no such header or the request is not for the API."""
    if not is_api(path):
        return None
    authorization = request.headers.get("authorization", "")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _checked_token_identity(app_state, request: Request, path: str) -> Identity | None:
    """Who is asking, when it is a personal token checked moments ago (web.auth.TokenCache) whose
    last use needs no new record: no database, so no worker thread. None otherwise."""
    token = _bearer(request, path)
    cache = getattr(app_state, "token_cache", None)
    if not token or cache is None:
        return None
    checked = cache.get(auth.token_hash(token))
    if checked is None or checked.last_used_at is None or auth.now() - checked.last_used_at > auth.TOUCH_EVERY:
        return None
    identity = Identity(user=auth.user_from(checked), via="token")
    identity.lang = _language(request, identity.user)
    return identity


def _language(request: Request, user: User | None) -> str:
    from web.templating import negotiate_language

    chosen = request.cookies.get(auth.LANGUAGE_COOKIE)
    if user is not None and user.language in LANGUAGES:
        return user.language
    if chosen in LANGUAGES:
        return chosen
    return negotiate_language(request, user)


def _resolve(app_state, request: Request, path: str) -> Identity:
    """Who is asking (runs in a worker thread: it reads the database)."""
    settings = app_state.settings
    web = settings.web
    identity = Identity()
    token = _bearer(request, path)
    if token is not None:
        found = None
        cache = getattr(app_state, "token_cache", None)
        generation = cache.generation() if cache is not None else None
        if token:
            with app_state.read_sessions() as s:
                found = auth.api_token_user(s, token)
        if found is None:
            identity.refusal = JSONResponse(
                {"error": {"field": "Authorization", "message": "invalid or revoked API token"}},
                status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return identity
        api_token, user = found
        identity.user, identity.via = user, "token"
        last_used_at = api_token.last_used_at
        if last_used_at is None or auth.now() - last_used_at > auth.TOUCH_EVERY:
            with app_state.sessions() as s:
                last_used_at = auth.touch_api_token(s, api_token.id)
                s.commit()
        if cache is not None:
            cache.put(auth.token_hash(token), api_token, user, generation, last_used_at)
    else:
        token = request.cookies.get(auth.SESSION_COOKIE)
        found = None
        if token:
            with app_state.read_sessions() as s:
                found = auth.session_user(s, token, web)
        if found is not None:
            web_session, user = found
            identity.user, identity.via, identity.csrf_token = user, "session", web_session.csrf_token
            if auth.now() - web_session.last_seen > auth.TOUCH_EVERY:
                with app_state.sessions() as s:
                    auth.touch_session(s, web_session.id)
                    s.commit()
        elif not is_api(path):
            # Before login, forms (the login form) are bound to a cookie of the visitor's own.
            # The API sets no cookie: its clients authenticate with a token or a login.
            presession = request.cookies.get(auth.PRESESSION_COOKIE)
            if not presession or len(presession) > 100:
                presession = secrets.token_urlsafe(32)
                identity.set_cookies.append(
                    (auth.PRESESSION_COOKIE, presession, cookie_options(request)))
            identity.csrf_token = auth.presession_csrf(settings.secret_key, presession)
    identity.lang = _language(request, identity.user)
    return identity


LANGUAGE_COOKIE_AGE = int(timedelta(days=365).total_seconds())

__all__ = ["SecurityHeaders", "IdentityMiddleware", "RequestLimits", "json_depth", "MAX_BODY_BYTES",
           "MAX_JSON_DEPTH", "CONTENT_SECURITY_POLICY", "SECURITY_HEADERS",
           "cookie_options", "is_api", "LANGUAGE_COOKIE_AGE", "UNSAFE_METHODS"]
