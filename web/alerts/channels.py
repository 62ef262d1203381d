"""How an alert reaches someone: e-mail over SMTP, a signed webhook, or an in-app notification.

Each sender either returns or raises ``DeliveryError``; ``with_retries`` tries again with
exponential backoff and reports every attempt, so the caller records the outcome and moves on to
the next delivery whatever happened to this one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Callable

import httpx
from sqlalchemy.orm import Session

from stock.settings import AlertSettings
from web.alerts.messages import Message
from web.alerts.models import Notification

SIGNATURE_HEADER = "X-Dawa-Signature"


class DeliveryError(Exception):
    """A delivery attempt failed; the message says why in words an administrator can act on."""


@dataclass(frozen=True)
class Outgoing:
    """One message to one address, as plain data: nothing here touches the database."""

    delivery_id: int
    alert_key: str
    kind: str
    severity: str
    channel: str
    address: str | None
    recipient: str
    message: Message
    link: str | None


def sign(secret: str, body: bytes) -> str:
    """The ``X-Dawa-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature over the raw body and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def send_email(out: Outgoing, settings: AlertSettings, now: datetime) -> None:
    msg = EmailMessage()
    msg["Subject"] = out.message.title
    msg["From"] = settings.smtp_from
    msg["To"] = out.address
    msg["Date"] = formatdate(now.timestamp(), usegmt=True)
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    msg["X-Dawa-Alert"] = out.alert_key
    msg.set_content(out.message.text(out.link))
    msg.add_alternative(out.message.html(out.link), subtype="html")
    msg["Content-Language"] = out.message.language  # after the body: set_content drops Content-* headers
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {exc}") from exc


def webhook_body(out: Outgoing, now: datetime) -> bytes:
    payload = {
        "alert_key": out.alert_key, "kind": out.kind, "severity": out.severity,
        "title": out.message.title, "body": out.message.body, "language": out.message.language,
        "link": out.link, "recipient": out.recipient, "sent_at": now.isoformat(),
        "messages": out.message.composed.to_json() if out.message.composed else None,
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")


def send_webhook(out: Outgoing, settings: AlertSettings, now: datetime) -> None:
    if not settings.webhook_secret:
        raise DeliveryError("no webhook secret set (DAWA_ALERTS__WEBHOOK_SECRET): webhooks are never sent unsigned")
    body = webhook_body(out, now)
    headers = {"Content-Type": "application/json; charset=utf-8",
               SIGNATURE_HEADER: sign(settings.webhook_secret, body)}
    try:
        response = httpx.post(out.address, content=body, headers=headers, timeout=settings.webhook_timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook {out.address}: {exc!s}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook {out.address}: HTTP {response.status_code}")


def add_notification(session: Session, user_id: int, message: Message, link: str | None,
                     alert_key: str, now: datetime) -> Notification:
    """The in-app channel: a row the user sees until acknowledged (never fails once written)."""
    note = Notification(user_id=user_id, created_at=now, title=message.title[:300], body=message.body,
                        messages=message.composed.to_json() if message.composed else None,
                        link=link, alert_key=alert_key)
    session.add(note)
    return note


SENDERS: dict[str, Callable[[Outgoing, AlertSettings, datetime], None]] = {
    "email": send_email,
    "webhook": send_webhook,
}


@dataclass
class Attempts:
    ok: bool
    attempts: int
    error: str | None


def with_retries(send: Callable[[], None], settings: AlertSettings,
                 sleep: Callable[[float], None] = time.sleep) -> Attempts:
    """Call ``send`` up to ``retry_attempts`` times, waiting base, 2·base, 4·base... between."""
    error = None
    for attempt in range(1, settings.retry_attempts + 1):
        try:
            send()
            return Attempts(True, attempt, None)
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a channel's surprise must not stop the others
            error = f"{type(exc).__name__}: {exc}"
        if attempt < settings.retry_attempts:
            sleep(settings.retry_base_delay_s * 2 ** (attempt - 1))
    return Attempts(False, settings.retry_attempts, error)
