"""A tiny app that renders the real templates, for testing the UI layer on its own.

It stands in for the web app's request handling: the user, CSRF token and language that the app's
middleware would put on ``request.state`` come from the query string instead, and every response
carries the same kind of Content-Security-Policy the app sends, so a template that needs inline
script or style, or an asset from another host, shows up as a violation in the browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles

from stock.queries import StockPosition
from jinja2 import ChoiceLoader, DictLoader

from web.templating import STATIC_DIR, negotiate_language, render, templates

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

CSRF_TOKEN = "test-csrf-token-0123456789"


@dataclass
class PageUser:
    """Has the attributes templates read from stock.models.User (plus the chosen language)."""
    username: str
    display_name: str | None
    role: str
    language: str | None = None
    facility_id: int | None = None    # national unless a page says otherwise (the navigation reads the scope)
    region: str | None = None


@dataclass
class PageFacility:
    code: str
    name: str


POSITIONS = [
    StockPosition("TRP-01", "AMOX500", Decimal("1234.5"), Decimal("300"), Decimal("4.115")),
    StockPosition("TRP-01", "PARA500", Decimal("0"), Decimal("12"), Decimal("0")),
    StockPosition("TRP-02", "INS-GLAR", Decimal("20"), Decimal("25"), Decimal("0.8")),
    StockPosition("TRP-02", "ORS", Decimal("85"), Decimal("0"), None),
]
FACILITIES = [PageFacility("TRP-01", "Tripoli Central Hospital"),
              PageFacility("TRP-02", "Souq al-Juma Health Centre")]


# Pages that exist only for tests, built from the real layout and macros.
TEST_TEMPLATES = {
    "test/chart.html": """{% extends "base.html" %}
{% import "_charts.html" as charts with context %}
{% block head %}{{ charts.script() }}{% endblock %}
{% block content %}
{{ charts.chart("use-amox", "line", labels, datasets, title=_("Monthly use")) }}
<button id="more" hx-get="/chart-fragment?lang={{ lang }}" hx-target="#swap">more</button>
<div id="swap"></div>
{% endblock %}""",
    "test/chart_fragment.html": """{% import "_charts.html" as charts with context %}
{{ charts.chart("on-hand", "bar", labels, datasets, title=_("On hand"), stacked=True) }}""",
}

MONTHS = ["2026-06", "2026-07", "2026-08", "2026-09"]
CHART_DATA = {"labels": MONTHS,
              "datasets": [{"label": "AMOX500", "data": [Decimal("310"), Decimal("295.5"), 280, 330]}]}


def _with_test_templates() -> None:
    env = templates.env
    if not isinstance(env.loader, ChoiceLoader):
        env.loader = ChoiceLoader([env.loader, DictLoader(TEST_TEMPLATES)])


def make_app() -> FastAPI:
    _with_test_templates()
    app = FastAPI()
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.middleware("http")
    async def state_and_headers(request: Request, call_next):
        q = request.query_params
        role = q.get("role")
        user = PageUser(q.get("username", "amina"), q.get("display_name", "Amina Ben Ali"), role,
                        q.get("user_lang")) if role else None
        request.state.user = user
        request.state.csrf_token = q.get("csrf", CSRF_TOKEN) or None
        request.state.lang = q.get("lang") or negotiate_language(request, user)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    @app.get("/")
    def home(request: Request):
        empty = request.query_params.get("empty") == "1"
        return render(request, "home.html", {"positions": [] if empty else POSITIONS,
                                             "facilities": [] if empty else FACILITIES})

    @app.get("/login")
    def login(request: Request):
        q = request.query_params
        return render(request, "login.html", {"error": q.get("error"), "username": q.get("typed")})

    @app.get("/error/{status_code}")
    def error(request: Request, status_code: int):
        return render(request, "error.html",
                      {"status_code": status_code, "message": request.query_params.get("message")},
                      status_code=status_code)

    @app.get("/chart")
    def chart(request: Request):
        return render(request, "test/chart.html", CHART_DATA)

    @app.get("/chart-fragment")
    def chart_fragment(request: Request):
        return render(request, "test/chart_fragment.html", CHART_DATA)

    @app.post("/echo-token")
    def echo_token(request: Request):
        """What an htmx request sent as its CSRF header, for checking dawa.js."""
        return PlainTextResponse(request.headers.get("x-csrf-token", "(none)"))

    return app
