"""``dawa ledger verify|head|check``: prove the ledger's hash chains and balances whole.
(``dawa ledger witness`` and ``witness-key`` are in web.cli.security.)"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from stock import balances, chain
from stock.db import session_factory
from web import audit_chain, witness
from web.cli import tables as cli_tables
from web.cli.common import DbOption, _engine, _fail, console, err, settings
from web.cli import language as cli_language
from web.cli.language import t as _t

ledger_app = typer.Typer(help="Verify and inspect the ledger.", no_args_is_help=True,
                         pretty_exceptions_enable=False)


@ledger_app.command("verify")
def ledger_verify(db: DbOption = None,
                  against: Annotated[Optional[Path], typer.Option(
                      help="A heads file from `dawa ledger head`, or signed by the verify job: prove "
                           "nothing was rewritten or cut off since")] = None,
                  public_key: Annotated[Optional[Path], typer.Option(
                      help="Public key the heads were signed with (default: DAWA_WITNESS_PUBLIC_KEY)")] = None):
    """Recompute every facility's hash chain; name the first altered, deleted or inserted entry.
    Against a signed heads file, its signature is checked first, and the audit trail too."""
    audit_head = None
    try:
        heads = chain.read_heads(against) if against else None
        if against is not None and '"signature"' in against.read_text(encoding="utf-8"):
            key = public_key or settings().witness_public_key
            if key is None:
                raise ValueError(f"{against} is signed: give --public-key (or set DAWA_WITNESS_PUBLIC_KEY)")
            signed = witness.read_signed(against, key)
            if signed.get("audit"):
                audit_head = (int(signed["audit"]["through_id"]), str(signed["audit"]["hash"]))
    except ValueError as exc:
        _fail(str(exc), 2)
    with session_factory(_engine(db), read_only=True)() as s:
        report = chain.verify(s, against=heads)
        sealed = audit_chain.verify(s, against=audit_head) if audit_head else None
    if sealed is not None and not sealed.ok:
        for problem in sealed.problems:
            err.print(f"[red]BROKEN[/red] audit trail: {problem}", highlight=False)
        if report.ok:
            _fail("the audit trail differs from the witnessed heads")
    if report.ok:
        message = (_t(cli_language.MSG_CHAINS_OK_AGAINST, entries=report.entries, facilities=report.facilities,
                      against=against) if against
                   else _t(cli_language.MSG_CHAINS_OK, entries=report.entries, facilities=report.facilities))
        console.print(f"[green]ok[/green]: {message}")
        return
    for b in report.breaks:
        err.print(f"[red]BROKEN[/red] {b}", highlight=False)
    _fail(f"{len(report.breaks)} broken chain(s) out of {report.facilities}")


@ledger_app.command("head")
def ledger_head(db: DbOption = None,
                out: Annotated[Optional[Path], typer.Option(help="Write the heads as JSON to this file")] = None):
    """Print each facility's chain head (length and hash), to keep outside the database."""
    with session_factory(_engine(db), read_only=True)() as s:
        if out:
            heads = chain.write_heads(s, out, datetime.now(timezone.utc))
        else:
            heads = chain.heads(s)
    table = cli_tables.table("Chain heads", [("facility", "id"), ("entries", "num"), ("sha256", "id")])
    if console.width < 64 + 30:  # the hash goes whole on a line of its own under its facility
        table = cli_tables.table("Chain heads", [("facility / sha256", "id"), ("entries", "num")])
        for h in heads:
            table.add_row(h["facility_code"], str(h["length"]))
            table.add_row(h["hash"], "", end_section=True)
    else:
        for h in heads:
            table.add_row(h["facility_code"], str(h["length"]), h["hash"])
    console.print(table)
    if out:
        console.print(f"written to {out}")


@ledger_app.command("check")
def ledger_check(db: DbOption = None,
                 repair: Annotated[bool, typer.Option(help="Reset drifted balances to the ledger")] = False):
    """Recompute every balance from the ledger and report drift (exit 1 if any)."""
    with session_factory(_engine(db))() as s:
        drifts = balances.drift(s)
        if drifts and repair:
            balances.repair(s, drifts)
            s.commit()
    if not drifts:
        console.print("[green]ok[/green]: every balance equals the sum of its ledger entries")
        return
    for d in drifts:
        err.print(f"[red]DRIFT[/red] {d}", highlight=False)
    if repair:
        console.print(f"repaired {len(drifts)} balance(s) from the ledger")
    _fail(f"{len(drifts)} balance(s) drifted from the ledger")


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
