"""Commands for running Dawa safely: database roles, witnessed chain heads, the audit trail's seal.

    dawa db roles --owner dawa_owner --app dawa_app      (as a PostgreSQL superuser, after init)
    dawa ledger witness-key --out /etc/dawa/witness.pem  (once; the key stays outside the database)
    dawa ledger witness                                  (what the verify job does on schedule)
    dawa audit verify                                    (recompute the audit trail's chain)
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from stock.db import session_factory
from web.cli import common as cli

db_app = typer.Typer(help="Database roles.", no_args_is_help=True, pretty_exceptions_enable=False)
audit_app = typer.Typer(help="The audit trail's hash chain.", no_args_is_help=True, pretty_exceptions_enable=False)

OWNER_PASSWORD_ENV = "DAWA_OWNER_PASSWORD"
APP_PASSWORD_ENV = "DAWA_APP_PASSWORD"



@db_app.command("roles")
def db_roles(owner: Annotated[str, typer.Option(help="Role that owns the tables and runs migrations")] = "dawa_owner",
             app: Annotated[str, typer.Option(help="Role the app, the scheduler and imports log in as")] = "dawa_app",
             db: Annotated[Optional[str], typer.Option("--db", help="Database URL of a superuser")] = None):
    """Create the owner and the data-only application role (passwords from DAWA_OWNER_PASSWORD and
    DAWA_APP_PASSWORD when set), and grant the app role no UPDATE, DELETE or TRUNCATE on the ledger
    and the audit trail."""
    from web.db_roles import setup_roles

    try:
        counts = setup_roles(cli._engine(db), owner=owner, app=app, owner_password=os.environ.get(OWNER_PASSWORD_ENV),
                             app_password=os.environ.get(APP_PASSWORD_ENV))
    except ValueError as exc:
        cli._fail(str(exc))
    cli.console.print(f"{owner} owns {counts['tables']} tables; {app} may read and write data, and only add to "
                      f"the {counts['append_only']} evidence tables. Run migrations as {owner}, the app as {app}.")


def witness_key(out: Annotated[Path, typer.Option(help="Where to write the private key (PEM); .pub beside it")]):
    """Make the Ed25519 key the verify job signs chain heads with. Keep it outside the database,
    readable only by the account that runs the scheduler; give the .pub to the national auditors."""
    from web import witness

    try:
        public = witness.generate_key(out)
    except FileExistsError as exc:
        cli._fail(str(exc))
    cli.console.print(f"private key {out} (mode 600), public key {public}; set DAWA_WITNESS_KEY_FILE={out}")


def witness_now(db: Annotated[Optional[str], typer.Option("--db")] = None,
                out: Annotated[Optional[Path], typer.Option(help="Folder (default: DAWA_WITNESS_DIR)")] = None):
    """Seal the audit trail, sign the ledger's and the audit trail's heads, and write them outside
    the database (the scheduled verify job also sends them to the national auditors)."""
    from web import audit_chain, witness

    settings = cli.settings()
    if not settings.witness_key_file:
        cli._fail("DAWA_WITNESS_KEY_FILE is not set: make a key with `dawa ledger witness-key`")
    folder = out or settings.witness_dir
    if folder is None:
        cli._fail("give --out or set DAWA_WITNESS_DIR")
    now = datetime.now(timezone.utc)
    with session_factory(cli._engine(db))() as s:
        audit_chain.seal(s, now)
        s.commit()
        data = witness.signed_heads(s, witness.load_private(settings.witness_key_file), now)
    path = witness.write(data, folder)
    cli.console.print(f"signed heads of {len(data['heads'])} facility chain(s) written to {path}")


@audit_app.command("verify")
def audit_verify(db: Annotated[Optional[str], typer.Option("--db")] = None):
    """Recompute the audit trail's hash chain and compare it with every seal."""
    from web import audit_chain

    with session_factory(cli._engine(db), read_only=True)() as s:
        report = audit_chain.verify(s)
    if report.ok:
        cli.console.print(f"[green]ok[/green]: {report.records} audit records in {report.seals} seal(s) verified")
        return
    for problem in report.problems:
        cli.err.print(f"[red]BROKEN[/red] {problem}", highlight=False)
    cli._fail("the audit trail's chain is broken")


@audit_app.command("seal")
def audit_seal(db: Annotated[Optional[str], typer.Option("--db")] = None):
    """Seal the audit records written since the last seal (older than a few minutes)."""
    from web import audit_chain

    with session_factory(cli._engine(db))() as s:
        sealed = audit_chain.seal(s)
        s.commit()
        cli.console.print(f"sealed through record {sealed.through_id}" if sealed else "nothing new to seal")


def register(app: typer.Typer, ledger_app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(audit_app, name="audit")
    ledger_app.command("witness-key")(witness_key)
    ledger_app.command("witness")(witness_now)


__all__ = ["register"]
