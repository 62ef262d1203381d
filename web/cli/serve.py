"""``dawa serve`` and ``dawa users ...``: run the web app and manage who may use it.

Registered on the main ``dawa`` command by ``register(app)``. Each command owns its transaction.
Passwords are never taken from a command-line argument (it would land in the shell history): they
are prompted for, or read from DAWA_USER_PASSWORD for scripted set-ups.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.db import session_factory
from stock.errors import DawaError, InvalidEntry, UnknownFacility
from stock.models import ROLES, Facility, User
from stock.settings import WebSettings
from web import audit, auth, words
from web.admin.service import check_password_strength, create_user
from web.cli import common as cli
from web.cli import tables as cli_tables
from web.cli import language as cli_language
from web.cli.language import MSG_NO, MSG_SCOPE_FACILITY, MSG_SCOPE_NATIONAL, MSG_SCOPE_REGION, MSG_USERS_TITLE, MSG_YES
from web.cli.language import t as _t
from web.models import ApiToken

users_app = typer.Typer(help="Create, disable and list users; issue API tokens.", no_args_is_help=True,
                        pretty_exceptions_enable=False)

DbOption = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: DAWA_DATABASE_URL)")]
PASSWORD_ENV = "DAWA_USER_PASSWORD"
def _user(session: Session, username: str) -> User:
    user = auth.user_by_username(session, username)
    if user is None:
        raise InvalidEntry(f"no user {username!r}", field="username")
    return user


def _password(username: str, password_env: str | None) -> str:
    if password_env:
        return password_env
    return typer.prompt(f"password for {username}", hide_input=True, confirmation_prompt=True)


@users_app.command("create")
def users_create(username: Annotated[str, typer.Argument(help="Login name (also the ledger's recorded_by)")],
                 role: Annotated[str, typer.Option(help=" / ".join(ROLES))],
                 facility: Annotated[Optional[str], typer.Option(help="Scope: this facility's code")] = None,
                 region: Annotated[Optional[str], typer.Option(help="Scope: this region")] = None,
                 display_name: Annotated[Optional[str], typer.Option(help="Name shown on pages")] = None,
                 language: Annotated[Optional[str], typer.Option(help="en, fr or ar")] = None,
                 password: Annotated[Optional[str], typer.Option(
                     envvar=PASSWORD_ENV, hidden=True, show_envvar=False,
                     help=f"read from {PASSWORD_ENV}; prompted for when unset")] = None,
                 db: DbOption = None):
    """Create a user. Without --facility or --region the user is national. The password is
    prompted for (or read from DAWA_USER_PASSWORD)."""
    engine = cli._engine(db)
    secret = _password(username, password)
    with session_factory(engine)() as s:
        try:
            user = create_user(s, username, role, secret, facility=facility, region=region,
                               display_name=display_name, language=language, web=cli.settings().web)
            s.commit()
        except (DawaError, UnknownFacility) as exc:
            cli._fail(str(exc))
    scope = facility or region or "national"
    cli.console.print(f"created {user.username}: {role}, scope {scope}")


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument()], db: DbOption = None):
    """Disable a user: their logins end at once and their API tokens stop working."""
    with session_factory(cli._engine(db))() as s:
        try:
            user = _user(s, username)
        except DawaError as exc:
            cli._fail(str(exc))
        user.active = False
        ended, revoked = auth.end_user_access(s, user.id)
        audit.record(s, None, "user_disabled", "user", username,
                     {"sessions_ended": ended, "tokens_revoked": revoked, "via": "cli"}, facility_id=user.facility_id)
        s.commit()
    cli.console.print(f"disabled {username}; {ended} login(s) ended, {revoked} token(s) revoked")


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument()], db: DbOption = None):
    """Enable a disabled user again."""
    with session_factory(cli._engine(db))() as s:
        try:
            user = _user(s, username)
        except DawaError as exc:
            cli._fail(str(exc))
        user.active = True
        audit.record(s, None, "user_enabled", "user", username, {"via": "cli"}, facility_id=user.facility_id)
        s.commit()
    cli.console.print(f"enabled {username}")


@users_app.command("password")
def users_password(username: Annotated[str, typer.Argument()],
                   password: Annotated[Optional[str], typer.Option(
                       envvar=PASSWORD_ENV, hidden=True, show_envvar=False)] = None,
                   db: DbOption = None):
    """Set a user's password (prompted for, or from DAWA_USER_PASSWORD); their logins end."""
    engine = cli._engine(db)
    secret = _password(username, password)
    with session_factory(engine)() as s:
        try:
            user = _user(s, username)
            check_password_strength(secret, username)
        except DawaError as exc:
            cli._fail(str(exc))
        user.password_hash = auth.hash_password(secret, cli.settings().web)
        ended, revoked = auth.end_user_access(s, user.id)
        audit.record(s, None, "user_password_set", "user", username,
                     {"sessions_ended": ended, "tokens_revoked": revoked, "via": "cli"}, facility_id=user.facility_id)
        s.commit()
    cli.console.print(f"password of {username} set; {ended} login(s) ended, {revoked} token(s) revoked")


@users_app.command("list")
def users_list(db: DbOption = None):
    """Every user with role, scope and whether active."""
    with session_factory(cli._engine(db), read_only=True)() as s:
        rows = s.execute(select(User, Facility.code).outerjoin(Facility, Facility.id == User.facility_id)
                         .order_by(User.username)).all()
    table = cli_tables.table(_t(MSG_USERS_TITLE, num=len(rows)), [("username", "id"), ("name", "text"), ("role", "id"),
                                                      ("scope", "id"), ("active", "id"), ("language", "id")])
    for user, code in rows:
        scope = (_t(MSG_SCOPE_FACILITY, code=code) if code else _t(MSG_SCOPE_REGION, region=user.region)
                 if user.region else _t(MSG_SCOPE_NATIONAL))
        table.add_row(user.username, user.display_name or "", cli_language.label(words.ROLE, user.role), scope,
                      _t(MSG_YES if user.active else MSG_NO), user.language or "")
    cli.console.print(table)


@users_app.command("token")
def users_token(username: Annotated[str, typer.Argument()],
                name: Annotated[str, typer.Option(help="What the token is for (e.g. the integration's name)")],
                days: Annotated[Optional[float], typer.Option(
                    help="Days the token works (default: the setting web.api_token_days, 90)")] = None,
                db: DbOption = None):
    """Issue a personal API token; it is printed once and cannot be shown again."""
    with session_factory(cli._engine(db))() as s:
        try:
            user = _user(s, username)
            if not user.active:
                raise InvalidEntry(f"user {username!r} is disabled", field="username")
            token, row = auth.issue_api_token(s, user, name, days=days or cli.settings().web.api_token_days)
        except DawaError as exc:
            cli._fail(str(exc))
        audit.record(s, None, "api_token_created", "api_token", row.id,
                     {"name": row.name, "for": username, "expires_at": row.expires_at, "via": "cli"},
                     facility_id=user.facility_id)
        s.commit()
    cli.err.print(f"API token {name!r} for {username} (shown once; use it as 'Authorization: Bearer ...'):")
    typer.echo(token)


@users_app.command("tokens")
def users_tokens(username: Annotated[str, typer.Argument()], db: DbOption = None):
    """A user's API tokens: id, name, issued, expires, last used, revoked."""
    with session_factory(cli._engine(db), read_only=True)() as s:
        try:
            user = _user(s, username)
        except DawaError as exc:
            cli._fail(str(exc))
        rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)).all()
    table = cli_tables.table(f"API tokens of {username} ({len(rows)})", [
        ("id", "num"), ("name", "text"), ("issued", "text"), ("expires", "text"), ("last used", "text"),
        ("revoked", "text")])
    for t in rows:
        table.add_row(str(t.id), t.name, *[v.isoformat(sep=" ", timespec="minutes") if v else "" for v in
                                           (t.created_at, t.expires_at, t.last_used_at, t.revoked_at)])
    cli.console.print(table)


@users_app.command("revoke-token")
def users_revoke_token(username: Annotated[str, typer.Argument()],
                       token_id: Annotated[int, typer.Argument(help="The token's id (see `dawa users tokens`)")],
                       db: DbOption = None):
    """Revoke one API token of a user; their other tokens and logins go on."""
    with session_factory(cli._engine(db))() as s:
        try:
            user = _user(s, username)
        except DawaError as exc:
            cli._fail(str(exc))
        if not auth.revoke_tokens(s, user.id, token_id):
            cli._fail(f"{username} has no live token {token_id}")
        audit.record(s, None, "api_token_revoked", "api_token", token_id, {"for": username, "via": "cli"},
                     facility_id=user.facility_id)
        s.commit()
    cli.console.print(f"token {token_id} of {username} revoked")


def serve(host: Annotated[Optional[str], typer.Option(help="Address to listen on (default 127.0.0.1)")] = None,
          port: Annotated[Optional[int], typer.Option(help="Port (default 8000)")] = None,
          workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
          db: DbOption = None):
    """Serve the web app and API with uvicorn (pages at /, API docs at /api/docs)."""
    import os

    import uvicorn

    settings = cli.settings()
    if db:
        settings = settings.model_copy(update={"database_url": db})
    engine = cli._engine(settings.database_url)
    if not settings.secret_key:
        cli._fail("DAWA_SECRET_KEY is not set: run `dawa init` (it writes one to .env)")
    host = host or settings.web.host
    port = port or settings.web.port
    cli.console.print(f"serving Dawa on http://{host}:{port}/  (API docs: http://{host}:{port}/api/docs)")
    if workers > 1:
        # Each worker builds its own app from the settings; --db reaches them through the environment.
        engine.dispose()
        if db:
            os.environ["DAWA_DATABASE_URL"] = db
        uvicorn.run("web.app:create_app", factory=True, host=host, port=port, workers=workers,
                    proxy_headers=False, log_level="info")
        return
    from web.app import create_app

    uvicorn.run(create_app(engine, settings), host=host, port=port, proxy_headers=False, log_level="info")


DEMO_USERS = (
    ("pharmacist", "pharmacist", "facility"),
    ("manager", "facility_manager", "facility"),
    ("auditor", "auditor", None),
    ("admin", "admin", None),
)


def demo_users(session: Session, web: WebSettings) -> list[tuple[str, str, str, str]]:
    """One user per role for trying the app, with fresh random passwords (set anew on each run).

    The pharmacist and the manager work at the first facility that is not a warehouse; the auditor
    and the admin are national. Returns (username, role, scope, password) rows to print. The
    caller commits.
    """
    fac = session.scalars(select(Facility).where(Facility.kind != "warehouse").order_by(Facility.code)).first()
    out = []
    for name, role, scoped in DEMO_USERS:
        username = f"demo-{name}"
        password = secrets.token_urlsafe(9)
        code = fac.code if scoped and fac is not None else None
        user = auth.user_by_username(session, username)
        if user is None:
            create_user(session, username, role, password, facility=code,
                        display_name=f"Demo {role.replace('_', ' ')}", web=web)
        else:
            user.password_hash = auth.hash_password(password, web)
            user.active = True
            auth.end_user_access(session, user.id)
            audit.record(session, None, "user_password_set", "user", username, {"via": "demo"},
                         facility_id=user.facility_id)
        out.append((username, role, f"facility {code}" if code else "national", password))
    return out


def serve_demo(engine, url: str, port: int | None = None) -> None:
    """The end of `dawa demo`: print a login for each role, then serve the app on 127.0.0.1."""
    import uvicorn

    from stock.settings import ensure_secrets
    from web.app import create_app

    if ensure_secrets(Path(".env")):
        cli.reread_settings()  # the secrets just written
    settings = cli.settings().model_copy(update={"database_url": url})
    with session_factory(engine)() as s:
        rows = demo_users(s, settings.web)
        s.commit()
    port = port or settings.web.port
    table = cli_tables.table("Demo users (passwords are new on each run)", [
        ("username", "id"), ("role", "id"), ("scope", "text"), ("password", "id")])
    for row in rows:
        table.add_row(*row)
    cli.console.print(table)
    _demo_alerts(engine, settings)
    scheduler = subprocess.Popen([sys.executable, "-m", "web.cli", "scheduler", "--db", url],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli.console.print(f"serving Dawa on http://127.0.0.1:{port}/  (API docs: /api/docs; Ctrl-C to stop); "
                      f"the alert scheduler runs beside it (process {scheduler.pid})")
    try:
        uvicorn.run(create_app(engine, settings), host="127.0.0.1", port=port, proxy_headers=False,
                    log_level="warning")
    finally:
        scheduler.terminate()
        try:
            scheduler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            scheduler.kill()


def _demo_alerts(engine, settings) -> None:
    """Run the new-flag and stock alert jobs once, so the demo users find their in-app alerts
    waiting (the scheduler started beside the server runs them on their schedules after that)."""
    from datetime import datetime, timezone

    from web.scheduler import run_locked

    now = datetime.now(timezone.utc)
    for name in ("scan", "stock"):
        outcome = run_locked(engine, settings, name, now, now=now)
        if outcome.ran:
            cli.console.print(f"alerts: {outcome.summary}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(users_app, name="users")


__all__ = ["register", "users_app", "serve", "create_user", "demo_users", "serve_demo", "check_password_strength",
           "PASSWORD_ENV"]
