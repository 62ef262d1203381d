"""Who is asking: passwords, logins, personal API tokens and CSRF tokens (login throttling: web.login_throttle).

Passwords are hashed with argon2id. A login is a random token in an HttpOnly cookie; the database
keeps only its SHA-256, so a copy of the database opens no session, and every login gets a fresh
token (the one presented before is ended). Personal API tokens work the same way and act with their
owner's role and scope. Functions here take a session and never commit: the caller owns the
transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from stock.models import User
from stock.settings import WebSettings
from web.models import ApiToken, LoginAttempt, WebSession

SESSION_COOKIE = "dawa_session"
PRESESSION_COOKIE = "dawa_csrf"
LANGUAGE_COOKIE = "dawa_lang"
API_TOKEN_PREFIX = "dawa_pat_"
TOUCH_EVERY = timedelta(seconds=60)
"""A login's last_seen is written at most this often, so reading pages costs no write each time."""

def now() -> datetime:
    return datetime.now(timezone.utc)


# --- passwords --------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                          type=Type.ID)


def hasher(web: WebSettings) -> PasswordHasher:
    """argon2id at the cost the settings ask for (the library's recommended cost by default)."""
    return _hasher(web.argon2_time_cost, web.argon2_memory_kib, web.argon2_parallelism)


@lru_cache(maxsize=8)
def _dummy_hash(ph: PasswordHasher) -> str:
    return ph.hash(secrets.token_urlsafe(16))


def hash_password(password: str, web: WebSettings) -> str:
    return hasher(web).hash(password)


def check_password(user: User | None, password: str, web: WebSettings) -> bool:
    """Whether ``password`` is ``user``'s; an unknown, disabled or password-less user never matches.

    An unknown name is checked against a dummy hash, so it takes as long as a wrong password. A
    hash made with other cost parameters than the settings' is replaced in place (the caller commits).
    """
    ph = hasher(web)
    stored = user.password_hash if user is not None and user.active and user.password_hash else None
    try:
        ph.verify(stored or _dummy_hash(ph), password)
    except (VerificationError, InvalidHashError):
        return False
    if stored is None:
        return False
    if ph.check_needs_rehash(stored):
        user.password_hash = ph.hash(password)
    return True


MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
MIN_PASSWORD_SCORE = 3
"""zxcvbn's score (0-4) a password must reach: 3 is "safely unguessable" against an online or a
slowed offline attack; lower scores are passwords from breach lists, keyboard walks, dictionary
words with digits appended and the like."""


def password_problem(password: str, username: str) -> str | None:
    """What makes ``password`` unfit (ASVS V2.1), or None: 12 to 128 characters, any characters
    (no composition rules), not the user name, not among the common and breached passwords zxcvbn
    ships (30,000 from breach corpora, also with substitutions and appended digits)."""
    from zxcvbn import zxcvbn

    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password must have at most {MAX_PASSWORD_LENGTH} characters"
    if username.lower() in password.lower():
        return "the password must not contain the user name"
    if zxcvbn(password, user_inputs=[username, "dawa"])["score"] < MIN_PASSWORD_SCORE:
        return "the password is common or easily guessed (it is in, or close to, lists of breached passwords)"
    return None


def user_by_username(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).one_or_none()


# --- tokens -----------------------------------------------------------------------------------

def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def presession_csrf(secret_key: str, cookie_value: str) -> str:
    """The CSRF token for forms shown before login (the login form), bound to the visitor's cookie.

    It is an HMAC of the cookie under the install's secret key: a page on another site can neither
    read the cookie nor compute the token from it.
    """
    return hmac.new(secret_key.encode("utf-8"), b"csrf:" + cookie_value.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# --- logins -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Login:
    """A login just started: the cookie's token is shown only here, once."""

    token: str
    session: WebSession


def start_session(session: Session, user: User, settings: WebSettings, *,
                  replacing: str | None = None) -> Login:
    """A new login for ``user``; the login whose token was ``replacing`` (if any) is ended."""
    if replacing:
        end_session(session, replacing)
    token = new_token()
    t = now()
    row = WebSession(token_hash=token_hash(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                     created_at=t, expires_at=t + timedelta(hours=settings.session_hours), last_seen=t)
    session.add(row)
    session.flush()
    return Login(token, row)


def end_session(session: Session, token: str) -> int:
    """End the login holding ``token``; returns how many were ended (0 or 1)."""
    result = session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))
    return result.rowcount or 0


def session_user(session: Session, token: str, settings: WebSettings) -> tuple[WebSession, User] | None:
    """The live login for a cookie's token and its active user, else None (expired, idle or
    disabled logins count as none)."""
    row = session.execute(
        select(WebSession, User).join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        return None
    web_session, user = row
    t = now()
    idle_limit = web_session.last_seen + timedelta(minutes=settings.session_idle_minutes)
    if not user.active or web_session.expires_at <= t or idle_limit <= t:
        return None
    return web_session, user


def touch_session(session: Session, web_session_id: int) -> None:
    session.execute(update(WebSession).where(WebSession.id == web_session_id).values(last_seen=now()))


def end_user_sessions(session: Session, user_id: int) -> int:
    """End every login of a user (when the account is disabled or its password changes)."""
    return session.execute(delete(WebSession).where(WebSession.user_id == user_id)).rowcount or 0


ATTEMPTS_KEPT = timedelta(days=30)
"""Login attempts are kept this long (the audit trail keeps logins for good); a name that logged in
from an address within it is known there (see ``web.login_throttle.login_refusal``)."""


def purge_expired(session: Session, settings: WebSettings) -> int:
    """Delete logins that can no longer be used and login attempts past keeping (run at each login,
    so the tables stay small without a scheduled job)."""
    t = now()
    idle_cut = t - timedelta(minutes=settings.session_idle_minutes)
    ended = session.execute(
        delete(WebSession).where((WebSession.expires_at <= t) | (WebSession.last_seen <= idle_cut))).rowcount
    keep_from = t - max(ATTEMPTS_KEPT, timedelta(minutes=settings.login_window_minutes))
    old = session.execute(delete(LoginAttempt).where(LoginAttempt.at < keep_from)).rowcount
    return (ended or 0) + (old or 0)


# --- personal API tokens ----------------------------------------------------------------------

def issue_api_token(session: Session, user: User, name: str, *, days: float = 90) -> tuple[str, ApiToken]:
    """A new personal token for ``user``, working for ``days``. The token itself is returned once
    and never stored."""
    from stock.errors import InvalidEntry

    if not name or not name.strip():
        raise InvalidEntry("a token needs a name saying what it is for", field="name")
    if not 0 < days <= 366:
        raise InvalidEntry("a token works for 1 to 366 days", field="days")
    token = new_token(API_TOKEN_PREFIX)
    t = now()
    row = ApiToken(token_hash=token_hash(token), name=name.strip()[:100], user_id=user.id, created_at=t,
                   expires_at=t + timedelta(days=days))
    session.add(row)
    session.flush()
    return token, row


def api_token_user(session: Session, token: str) -> tuple[ApiToken, User] | None:
    """The live token and its active owner, else None (unknown, revoked, or owner disabled)."""
    row = session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        return None
    api_token, user = row
    if api_token.revoked_at is not None or not user.active or api_token.expires_at <= now():
        return None
    return api_token, user


def revoke_tokens(session: Session, user_id: int, token_id: int | None = None) -> int:
    """Revoke ``user_id``'s live tokens (only ``token_id`` when given); how many were. A revoked
    token stays revoked: enabling its owner again revives none."""
    stmt = update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    if token_id is not None:
        stmt = stmt.where(ApiToken.id == token_id)
    return session.execute(stmt.values(revoked_at=now())).rowcount or 0


def end_user_access(session: Session, user_id: int) -> tuple[int, int]:
    """End every login and revoke every token of a user (disabled, or a new password): (logins, tokens)."""
    return end_user_sessions(session, user_id), revoke_tokens(session, user_id)


def touch_api_token(session: Session, api_token_id: int) -> datetime:
    at = now()
    session.execute(update(ApiToken).where(ApiToken.id == api_token_id).values(last_used_at=at),
                    execution_options={TOUCH: True})
    return at


# --- recently checked tokens ------------------------------------------------------------------

TOKEN_CACHE_SECONDS = 5.0
"""How long a checked personal token is taken as checked without reading the database again.

A token revoked, or its owner disabled or changed (role, scope), by anything in this process (a
page, a CLI command, a test) counts from the next request: every commit that touches a user, a
token or a login empties the caches of the process. A change made by another process (the CLI
while `dawa serve` runs, another worker, a hand edit of the database) counts within this many
seconds."""

TOUCH = "dawa_token_touch"
"""Execution option of the statement that only records a token's last use (it changes nothing
the cache holds)."""

_generation = 0
_generation_lock = threading.Lock()


def credentials_changed() -> None:
    """Forget every token checked so far in this process (called after a commit that changed a
    user or a token)."""
    global _generation
    with _generation_lock:
        _generation += 1


@dataclass(frozen=True)
class CheckedToken:
    api_token_id: int
    expires_at: datetime
    last_used_at: datetime | None
    user: dict
    generation: int
    until: float


_USER_COLUMNS = tuple(c.key for c in User.__table__.columns)


class TokenCache:
    """Personal tokens checked in the last TOKEN_CACHE_SECONDS, by their SHA-256: an API request
    that presents one again needs no database read (nor a worker thread) to know who is asking."""

    def __init__(self, seconds: float = TOKEN_CACHE_SECONDS, size: int = 10_000):
        self.seconds = seconds
        self.size = size
        self._rows: dict[str, CheckedToken] = {}

    @staticmethod
    def generation() -> int:
        """Read before the database is: a change committed after that voids what is then put."""
        return _generation

    def get(self, digest: str) -> CheckedToken | None:
        found = self._rows.get(digest)
        if found is None:
            return None
        if found.generation != _generation or found.until < time.monotonic() or found.expires_at <= now():
            self._rows.pop(digest, None)
            return None
        return found

    def put(self, digest: str, api_token: ApiToken, user: User, generation: int,
            last_used_at: datetime | None = None) -> None:
        if self.seconds <= 0 or generation != _generation:
            return
        if len(self._rows) >= self.size:
            self._rows.clear()
        self._rows[digest] = CheckedToken(
            api_token.id, api_token.expires_at, last_used_at or api_token.last_used_at,
            {name: getattr(user, name) for name in _USER_COLUMNS}, generation,
            time.monotonic() + self.seconds)

    def forget(self, digest: str) -> None:
        self._rows.pop(digest, None)


def user_from(checked: CheckedToken) -> User:
    """A fresh User of the request's own, as if loaded from the database (detached)."""
    user = User(**checked.user)
    make_transient_to_detached(user)
    return user


_CREDENTIALS = ("app_user", "api_token")


@event.listens_for(Session, "after_flush")
def _note_credentials(session: Session, _flush_context) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, (User, ApiToken)):
            session.info["dawa_credentials_changed"] = True
            return


@event.listens_for(Session, "do_orm_execute")
def _note_credential_statements(state) -> None:
    if (state.is_update or state.is_delete) and not state.execution_options.get(TOUCH):
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in _CREDENTIALS:
            state.session.info["dawa_credentials_changed"] = True


@event.listens_for(Session, "after_commit")
def _forget_on_commit(session: Session) -> None:
    if session.info.pop("dawa_credentials_changed", False):
        credentials_changed()


@event.listens_for(Session, "after_rollback")
def _clear_on_rollback(session: Session) -> None:
    session.info.pop("dawa_credentials_changed", None)


__all__ = [
    "SESSION_COOKIE", "PRESESSION_COOKIE", "LANGUAGE_COOKIE", "API_TOKEN_PREFIX", "hash_password",
    "check_password", "user_by_username", "new_token", "token_hash", "presession_csrf",
    "tokens_equal", "Login", "start_session", "end_session", "session_user", "touch_session",
    "end_user_sessions", "purge_expired", "issue_api_token", "api_token_user",
    "touch_api_token", "revoke_tokens", "end_user_access", "password_problem", "TokenCache", "TOKEN_CACHE_SECONDS", "credentials_changed", "user_from",
]
