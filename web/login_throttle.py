"""Login throttling that slows guessing without locking anyone out (see ``login_refusal``).

Every password checked at the login form is a LoginAttempt row (name as typed, lower-cased, and
the client's address, which comes from X-Forwarded-For only behind a configured proxy). Functions
here take a session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stock.settings import WebSettings
from web.auth import now
from web.models import LoginAttempt


@dataclass(frozen=True)
class Refusal:
    """Why a login attempt is refused before its password is even checked, and until when."""

    by: str  # "pair", "ip" or "account"
    until: datetime

    def minutes_left(self, at: datetime | None = None) -> int:
        seconds = (self.until - (at or now())).total_seconds()
        return max(1, int(-(-seconds // 60)))


def login_refusal(session: Session, username: str, ip: str, settings: WebSettings) -> Refusal | None:
    """A refusal if this try must wait, else None. Nothing here can lock a user out from where they
    work:

    - one name from one address (``pair``): after ``login_max_failures`` failures since the pair's
      last success, each try waits ``login_backoff_seconds`` after the last failure, doubling with
      each further failure up to ``login_backoff_max_minutes``;
    - from an address where ``login_max_names_per_ip`` names failed within the window (``ip``: a
      sweep over names), and for a name that failed ``login_max_failures_per_account`` times from
      anywhere (``account``: guesses spread over addresses), only names that never logged in from
      that address are refused: the staff of a hospital behind one address, and a user whose name
      is being guessed elsewhere, log in as ever from where they did before.
    """
    t = now()
    since = t - timedelta(minutes=settings.login_window_minutes)
    name = username.strip().lower()
    pair = [LoginAttempt.username == name, LoginAttempt.ip == ip]
    last_ok = session.scalar(select(func.max(LoginAttempt.at)).where(*pair, LoginAttempt.succeeded.is_(True)))
    fails = session.scalars(
        select(LoginAttempt.at).where(*pair, LoginAttempt.succeeded.is_(False),
                                      *([LoginAttempt.at > last_ok] if last_ok else []))
        .order_by(LoginAttempt.at.desc()).limit(settings.login_max_failures + 32)).all()
    extra = len(fails) - settings.login_max_failures
    if extra >= 0:
        wait = min(settings.login_backoff_seconds * 2 ** extra, settings.login_backoff_max_minutes * 60)
        until = fails[0] + timedelta(seconds=wait)
        if until > t:
            return Refusal("pair", until)
    if last_ok is not None:
        return None  # a name known at this address: never held up by others' failures
    failed = [LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since]
    names = session.scalar(select(func.count(func.distinct(LoginAttempt.username)))
                           .where(LoginAttempt.ip == ip, *failed)) or 0
    if names >= settings.login_max_names_per_ip:
        last = session.scalar(select(func.max(LoginAttempt.at)).where(LoginAttempt.ip == ip, *failed))
        return Refusal("ip", last + (t - since))
    account = session.scalar(select(func.count()).select_from(LoginAttempt)
                             .where(LoginAttempt.username == name, *failed)) or 0
    if account >= settings.login_max_failures_per_account:
        last = session.scalar(select(func.max(LoginAttempt.at)).where(LoginAttempt.username == name, *failed))
        return Refusal("account", last + (t - since))
    return None


def record_attempt(session: Session, username: str, ip: str, succeeded: bool) -> None:
    session.add(LoginAttempt(username=username.strip().lower()[:64], ip=ip[:64], at=now(),
                             succeeded=succeeded))
    session.flush()


__all__ = ["Refusal", "login_refusal", "record_attempt"]
