"""The web app: ``create_app()`` builds it around one database engine and one settings object.

Pages are server-rendered (web.pages, then one package per feature: web.pharmacy, web.stock, web.flags,
web.admin, web.alerts, web.replenishment, mounted in ROUTERS); the JSON API lives under
/api/v1 (web.api) with its OpenAPI description at /api/openapi.json and docs at /api/docs, served
from files installed with the app (no CDN). Every response carries the security headers; who is
asking and the CSRF check are settled before any route runs (web.middleware); who may do what is
decided in web.access. Expected errors never become a 500: access refusals and domain errors
become a JSON body naming the field on the API, and a page elsewhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stock import errors as domain
from stock.db import make_engine, retryable, session_factory
from stock.settings import Settings, get_settings
from web import api, audit_trail, dhis2_pages, pages, pharmacy
from web.access import AccessError, NotAuthenticated
from web.admin import forms as admin_forms
from web.admin import pages as admin_pages
from web.alerts import routes as alerts
from web.errors import domain_status
from web.flags import pages as flags
from web.middleware import SECURITY_HEADERS, IdentityMiddleware, RequestLimits, SecurityHeaders, is_api
from web.replenishment import routers as replenishment
from web.stock import pages as stock

log = logging.getLogger("dawa.web")
WEB_DIR = Path(__file__).resolve().parent

ROUTERS = (pages.router, api.router, pharmacy.router, alerts.router, flags.router, stock.router, admin_pages.router,
           admin_forms.router, audit_trail.router, dhis2_pages.router, *replenishment.ROUTERS)
"""Every feature's routes, mounted in this order (requisitions, levels and reconciliation last)."""

def create_app(engine: Engine | None = None, settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.secret_key:
        raise RuntimeError("DAWA_SECRET_KEY is not set: run `dawa init` (it writes one to .env) "
                           "or set it in the environment")
    engine = engine or make_engine(settings.database_url)
    app = FastAPI(title="Dawa API", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json",
                  description="Stock, ledger and flags of the Dawa medicines tracking system. "
                  "Authenticate with `Authorization: Bearer <token>` (a personal token from "
                  "`dawa users token`). Errors: `{\"error\": {\"field\": ..., \"message\": ...}}`.")
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.read_sessions = session_factory(engine, read_only=True)
    from stock.pseudonyms import patient_key
    from web import log_privacy
    from web.auth import TokenCache

    log_privacy.install(patient_key(settings))

    app.state.token_cache = TokenCache()

    # Added last runs first: security headers wrap everything, identity and CSRF run inside them.
    app.add_middleware(IdentityMiddleware)
    app.add_middleware(RequestLimits)
    app.add_middleware(SecurityHeaders)
    if settings.web.trusted_proxies:
        # The client's address (throttling, the audit trail) comes from X-Forwarded-For only when
        # the connection comes from a configured proxy; uvicorn itself is run without proxy headers.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.web.trusted_proxies))

    _add_error_handlers(app)
    _add_docs(app)
    _add_health(app)

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", VersionedStaticFiles(directory=WEB_DIR / "static"), name="static")
    return app


class VersionedStaticFiles(StaticFiles):
    """Static files; those asked for with a content version (``?v=``, as templates link them)
    may be cached for a year, so a slow link fetches each asset once per change."""

    def file_response(self, full_path, stat_result, scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if b"v=" in scope.get("query_string", b""):
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        else:
            response.headers.setdefault("cache-control", "no-cache")
        return response


# --- errors ----------------------------------------------------------------------------------

def _error_json(status: int, message: str, field: str | None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status, headers=headers)


MSG_NO_PAGE = "no such page"
MSG_REFUSED = "request refused"
MSG_BUSY = "the database is busy; try again in a moment"
MSG_INTERNAL = "internal error; it has been logged"
MSG_INVALID_FIELD = "%(field)s: this value is not valid"
MSG_INVALID = "this request is not valid"


def _error_page(request: Request, status: int, message: str, error: AccessError | None = None) -> Response:
    """The error page in the reader's language: a refusal with parameters is worded for them
    (web.access), any other message is looked up in the catalog by the template."""
    from web.templating import render

    if error is not None and error.params:
        message = error.in_language(getattr(request.state, "lang", "en"))
    return render(request, "error.html", {"status_code": status, "message": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AccessError)
    async def access_refused(request: Request, exc: AccessError):
        if is_api(request.url.path):
            headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
            return _error_json(exc.status_code, exc.message, exc.field, headers)
        if isinstance(exc, NotAuthenticated):
            target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""),
                                            safe="")
            if request.headers.get("hx-request"):
                return Response(status_code=401, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        return _error_page(request, exc.status_code, exc.message, exc)

    @app.exception_handler(domain.DawaError)
    async def domain_error(request: Request, exc: domain.DawaError):
        status = domain_status(exc)
        if is_api(request.url.path):
            return _error_json(status, exc.message, exc.field)
        return _error_page(request, status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header", "cookie")]
        field = ".".join(loc) or None
        message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
        if is_api(request.url.path):
            return _error_json(422, message, field)
        from web.templating import gettext
        from web.words import isolate

        lang = getattr(request.state, "lang", "en")
        shown = gettext(lang, MSG_INVALID_FIELD, field=isolate(field)) if field else gettext(lang, MSG_INVALID)
        return _error_page(request, 422, shown)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else MSG_REFUSED
        if exc.status_code == 404:
            message = MSG_NO_PAGE
        if is_api(request.url.path) or request.url.path.startswith("/static/"):
            return _error_json(exc.status_code, message, None, getattr(exc, "headers", None))
        return _error_page(request, exc.status_code, message)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError):
        # A deadlock or serialization failure that outlasted the retries where they are made is
        # the database shedding load, not a fault: the client is told to try again shortly.
        if not retryable(exc):
            return await unexpected(request, exc)
        log.warning("%s %s: %s after retries", request.method, request.url.path, type(exc.orig).__name__)
        message = MSG_BUSY
        response = (_error_json(503, message, None) if is_api(request.url.path)
                    else _error_page(request, 503, message))
        response.headers["Retry-After"] = "1"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # Runs outside the middlewares, so the security headers are added here.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        if is_api(request.url.path):
            response: Response = _error_json(500, MSG_INTERNAL, None)
        else:
            try:
                response = _error_page(request, 500, MSG_INTERNAL)
            except Exception:  # noqa: BLE001
                response = HTMLResponse("internal error", status_code=500)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


# --- docs and health -------------------------------------------------------------------------

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Dawa API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"""

DOCS_INIT_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
});
"""


def _swagger_assets() -> Path | None:
    try:
        import swagger_ui
    except ImportError:
        return None
    path = Path(swagger_ui.__file__).resolve().parent / "static"
    return path if path.is_dir() else None


def _add_docs(app: FastAPI) -> None:
    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML)

    @app.get("/api/docs/init.js", include_in_schema=False)
    def docs_init() -> Response:
        return Response(DOCS_INIT_JS, media_type="text/javascript")

    assets = _swagger_assets()
    if assets is not None:
        app.mount("/api/docs/assets", StaticFiles(directory=assets), name="api-docs-assets")


def _add_health(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> JSONResponse:
        """Alive and the database answers. Needs no login (for load balancers and monitors)."""
        try:
            with request.app.state.read_sessions() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            log.warning("health check: database unreachable: %s", exc)
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})


__all__ = ["create_app"]
