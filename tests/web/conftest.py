"""The web app served for real: uvicorn on a free loopback port, in a thread, over the test's
database (SQLite and PostgreSQL through the ``engine`` fixture), talked to with httpx.

``web_world`` holds a small world: three facilities in Tripoli (WH-C, H1, HC2) and one in Benghazi
(B1), stock at each, and one user per role and scope (USERS); every password is PASSWORD.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import date

import httpx
import pytest

from stock.db import session_factory
from stock.ledger import post
from stock.masterdata import add_facility
from stock.settings import Settings
from tests.stock.builders import build_world, entry

PASSWORD = "correct-horse-battery"

USERS = {
    # username: (role, facility, region)
    "pharm_h1": ("pharmacist", "H1", None),
    "pharm_hc2": ("pharmacist", "HC2", None),
    "manager_h1": ("facility_manager", "H1", None),
    "manager_tripoli": ("facility_manager", None, "Tripoli"),
    "auditor_tripoli": ("auditor", None, "Tripoli"),
    "auditor": ("auditor", None, None),
    "admin": ("admin", None, None),
}


def seed_world(Session) -> None:
    from web.admin.service import create_user

    with Session() as s:
        build_world(s)
        add_facility(s, "B1", "Benghazi Medical Centre", "Benghazi", "hospital")
        post(s, [entry("receipt", 100, facility="H1", item="MOR10", lot="L1"),
                 entry("receipt", 50, facility="HC2", item="MOR10", lot="L2"),
                 entry("receipt", 20, facility="B1", item="INSG", lot="L3", expiry_date=date(2027, 6, 30)),
                 entry("dispense", 10, facility="H1", item="MOR10", lot="L1", prescription_id="RX1")])
        for username, (role, facility, region) in USERS.items():
            create_user(s, username, role, PASSWORD, facility=facility, region=region, web=make_settings().web)
        s.commit()


def add_users(Session, users: dict) -> None:
    """More users, given like USERS, for a test that needs other roles or scopes."""
    from web.admin.service import create_user

    with Session() as s:
        for name, (role, facility, region) in users.items():
            create_user(s, name, role, PASSWORD, facility=facility, region=region, web=make_settings().web)
        s.commit()


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Served:
    """An ASGI app served by uvicorn in a background thread until ``stop()``."""

    def __init__(self, app, access_log: bool = False):
        import uvicorn

        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="info" if access_log else "warning", lifespan="off",
                                access_log=access_log, proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@dataclass
class LiveServer:
    base_url: str
    app: object
    engine: object
    Session: object
    clients: list = field(default_factory=list)

    def client(self, **kwargs) -> httpx.Client:
        c = httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=30, **kwargs)
        self.clients.append(c)
        return c

    def login(self, username: str, password: str = PASSWORD, client: httpx.Client | None = None) -> httpx.Client:
        """A client logged in as ``username`` through the real login form; fails the test if not."""
        c = client or self.client()
        r = login(c, username, password)
        assert r.status_code == 303, (r.status_code, r.text[:500])
        return c


def app_routes(app) -> list:
    """Every endpoint route the app answers, each with ``path``, ``methods`` and ``dependant``.

    Recent FastAPI keeps included routers nested (``iter_route_contexts`` flattens them); older
    versions list every route in ``app.routes``. Mounts (static files) and plain Starlette routes
    (the OpenAPI document) have no dependant and are left out.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before nested routers
        candidates = list(app.routes)
    else:
        candidates = list(iter_route_contexts(app.routes))
    out = []
    for route in candidates:
        methods = getattr(route, "methods", None)
        try:
            dependant = route.dependant
        except AttributeError:
            continue
        if methods and dependant is not None:
            out.append(route)
    return out


CSRF_INPUT = re.compile(r'name="csrf_token"\s+value="([^"]*)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html) or CSRF_META.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def login(client: httpx.Client, username: str, password: str = PASSWORD, next: str | None = None) -> httpx.Response:
    page = client.get("/login")
    if page.status_code == 303:  # logged in already: the login page sends them on, with its token
        page = client.get(page.headers["location"], follow_redirects=True)
    data = {"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    if next is not None:
        data["next"] = next
    return client.post("/login", data=data)


def page_csrf(client: httpx.Client, path: str = "/") -> str:
    r = client.get(path, follow_redirects=True)  # "/" sends each role on to its landing page
    assert r.status_code == 200, (path, r.status_code)
    return csrf_of(r.text)


CHEAP_HASHING = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
"""argon2id at a cost fit for tests: the same algorithm and code path, milliseconds per hash."""


def make_settings(**web) -> Settings:
    # No .env from the working folder: the test states every setting it depends on.
    return Settings(_env_file=None, secret_key="test-secret-key-" + "x" * 32, web={**CHEAP_HASHING, **web})


@pytest.fixture
def web_world(engine):
    Session = session_factory(engine)
    seed_world(Session)
    return engine


@pytest.fixture
def web_settings() -> Settings:
    """Override in a test module to change web settings (throttling limits...)."""
    return make_settings()


@pytest.fixture
def live_server(web_world, web_settings):
    from web.app import create_app

    app = create_app(web_world, web_settings)
    served = Served(app)
    server = LiveServer(served.base_url, app, web_world, session_factory(web_world))
    try:
        yield server
    finally:
        for c in server.clients:
            c.close()
        served.stop()
