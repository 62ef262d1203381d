"""A small world for alert tests: facilities in two regions, users of every role and scope, a
controlled clock, and real loopback receivers (an SMTP server and an HTTP server)."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from stock.ledger import post

from stock.masterdata import add_facility, add_user
from stock.models import User
from stock.settings import AlertSettings, Settings
from tests.stock.builders import build_world, entry  # noqa: F401  (re-exported for the tests)
from web.alerts.models import AlertDelivery, AlertPreference, Notification

NOW = datetime(2026, 6, 15, 4, 0, tzinfo=timezone.utc)
"""The tests' clock: mid-June, so March-May are the three full months of average use."""

USERS = {
    # username: (role, facility, region)
    "pharm_h1": ("pharmacist", "H1", None),
    "mgr_h1": ("facility_manager", "H1", None),
    "mgr_hc2": ("facility_manager", "HC2", None),
    "mgr_tripoli": ("facility_manager", None, "Tripoli"),
    "mgr_benghazi": ("facility_manager", None, "Benghazi"),
    "mgr_national": ("facility_manager", None, None),
    "aud_tripoli": ("auditor", None, "Tripoli"),
    "aud_benghazi": ("auditor", None, "Benghazi"),
    "aud_b1": ("auditor", "B1", None),
    "aud_national": ("auditor", None, None),
    "admin": ("admin", None, None),
}


def day(d: date | datetime, hour: int = 10) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=timezone.utc)


def settings(**alerts) -> Settings:
    """Settings with tiny retry delays (tests) and whatever alert settings the test gives."""
    values = {"retry_attempts": 3, "retry_base_delay_s": 0.01, "smtp_timeout_s": 5, "webhook_timeout_s": 5,
              "webhook_secret": "test-webhook-secret", "base_url": "http://dawa.test"}
    values.update(alerts)
    return Settings(_env_file=None, secret_key="test", default_timezone="UTC", alerts=AlertSettings(**values))


def populate(session) -> None:
    build_world(session)
    add_facility(session, "B1", "Benghazi Medical Centre", "Benghazi", "hospital")
    for username, (role, facility, region) in USERS.items():
        add_user(session, username, role, facility_code=facility, region=region)
    session.commit()


def user(session, username: str) -> User:
    return session.scalars(select(User).where(User.username == username)).one()


def prefer(session, username: str, channel: str, address: str | None = None, *, language: str | None = None,
           mode: str = "immediate", min_severity: str = "low") -> AlertPreference:
    pref = AlertPreference(user_id=user(session, username).id, channel=channel, address=address,
                           language=language, mode=mode, min_severity=min_severity, active=True, created_at=NOW)
    session.add(pref)
    session.commit()
    return pref


def notified(session) -> dict[str, list[str]]:
    """Each user's in-app notification titles, in order."""
    rows = session.execute(select(User.username, Notification.title).join(User, User.id == Notification.user_id)
                           .order_by(Notification.id))
    out: dict[str, list[str]] = {}
    for username, title in rows:
        out.setdefault(username, []).append(title)
    return out


def deliveries(session, **where) -> list[AlertDelivery]:
    stmt = select(AlertDelivery).order_by(AlertDelivery.id)
    for name, value in where.items():
        stmt = stmt.where(getattr(AlertDelivery, name) == value)
    session.expire_all()
    return list(session.scalars(stmt))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    """A real SMTP server on loopback (aiosmtpd) keeping every message it accepts."""

    port: int = 0
    messages: list = field(default_factory=list)

    def __post_init__(self):
        from aiosmtpd.controller import Controller

        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                import email
                from email import policy

                msg = email.message_from_bytes(envelope.content, policy=policy.default)
                box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class Hook:
    """A real HTTP server on loopback answering every POST with ``status`` and keeping requests."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple[dict, bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def payloads(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


MARCH = day(date(2026, 3, 2))


def stocked_out(session):
    """H1 received 100 morphine in March and dispensed all of it by May: a stockout."""
    post(session, [entry("receipt", 100, facility="H1", item="MOR10", lot="L1", at=MARCH),
                   entry("dispense", 40, facility="H1", item="MOR10", lot="L1", at=day(date(2026, 4, 10))),
                   entry("dispense", 60, facility="H1", item="MOR10", lot="L1", at=day(date(2026, 5, 10)))],
         now=day(date(2026, 5, 10)))
    session.commit()


def later(days: int) -> datetime:
    return NOW + timedelta(days=days)
