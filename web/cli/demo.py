"""``dawa sample-data`` and ``dawa demo``: a realistic data set, and a demo database served with
one user per role, on any date (the data end yesterday, as the pages reckon it)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer

import migrations
from stock import chain
from stock.db import session_factory
from stock.settings import Settings, ensure_secrets
from web.cli import tables as cli_tables
from web.cli.common import (DbOption, _engine, _fail, _import, _patient_key, _scan, console, reread_settings,
                            settings)
from web.cli.flags import _flag_table
from web.cli import language as cli_language
from web.cli.language import t as _t


def sample_data_cmd(out: Annotated[Path, typer.Argument(help="Folder to write the data set into")],
                    seed: Annotated[int, typer.Option(help="Same seed, same files")] = 1,
                    scale: Annotated[float, typer.Option(help="1.0 is about 50-100 thousand ledger rows")] = 1.0,
                    profile: Annotated[str, typer.Option(
                        help="Legitimate noise around the leakage: standard, shifted (twice the rates "
                             "and magnitudes) or plain (none)")] = "standard",
                    end: Annotated[Optional[str], typer.Option(
                        help="Last day of the data (YYYY-MM-DD); default: yesterday")] = None,
                    months: Annotated[int, typer.Option(help="Months of data up to --end")] = 6):
    """Write a realistic data set in the contract format, with injected leakage and truth.csv."""
    from sample_data.generator import generate
    from sample_data.legitimate.profile import PROFILES

    if scale <= 0:
        _fail("--scale must be greater than zero", 2)
    if profile not in PROFILES:
        _fail(f"--profile must be one of {', '.join(PROFILES)}", 2)
    if months < 1:
        _fail("--months must be at least 1", 2)
    last = _yesterday()
    if end is not None:
        try:
            last = date.fromisoformat(end)
        except ValueError:
            _fail(f"--end {end!r} is not a date (2026-06-30)", 2)
    summary = generate(out, seed=seed, scale=scale, profile=profile, end=last, months=months)
    console.print(f"wrote {out}: {summary.ledger_rows:,} ledger rows up to {last} (seed {seed}, scale {scale}, "
                  f"profile {profile})")


def _yesterday() -> date:
    """The last day of new sample data: the day before the one the pages reckon stock "as of"."""
    return settings().today() - timedelta(days=1)


def demo(folder: Annotated[Path, typer.Option("--dir", help="Where the demo database and data go")] = Path("demo"),
         scale: Annotated[float, typer.Option(help="Size of the sample data set")] = 0.3,
         seed: Annotated[int, typer.Option(help="Sample data seed")] = 1,
         db: DbOption = None,
         serve: Annotated[bool, typer.Option(
             "--serve/--no-serve", help="End by serving the web app on 127.0.0.1 with a demo user per role")] = True,
         port: Annotated[int, typer.Option(help="Port to serve on")] = 8000):
    """Build a SQLite database with sample data, print a stock summary and the top flags, then
    serve the web app with one demo user per role."""
    from sample_data.generator import generate

    folder.mkdir(parents=True, exist_ok=True)
    if ensure_secrets(Path(".env")):
        reread_settings()  # the secrets just written
    url = db or f"sqlite:///{folder / 'dawa.sqlite'}"
    engine = _engine(url, require_schema=False)
    migrations.upgrade(engine)
    data = folder / "data"
    if not (data / "ledger.csv").exists():
        console.print(f"generating sample data in {data} ...")
        generate(data, seed=seed, scale=scale, end=_yesterday())
    report = _import(data, engine)
    console.print(f"imported: {report.entries_added:,} ledger entries added, "
                  f"{report.entries_already_present:,} already present")
    last = _last_day(engine, settings().default_timezone)
    if last is not None and last < _yesterday():
        console.print(f"[yellow]the demo data end on {last}[/yellow]: remove {folder} and run the demo again "
                      "for data up to yesterday")
    _summary(engine, settings())
    report = _scan(engine)
    from anomaly.export import contract_rows

    with session_factory(engine, read_only=True)() as s:
        top = contract_rows(s, key=_patient_key(), limit=10)
    console.print(f"\nscan: {report.flags_total} flags")
    _flag_table(top, _t(cli_language.MSG_TOP_FLAGS))
    console.print(f"\ndatabase: {url}   (try: dawa stock --db {url} --facility ...)")
    if serve:
        from web.cli.serve import serve_demo

        serve_demo(engine, url, port)


def _last_day(engine, zone: str) -> date | None:
    """The local day of the latest movement in the ledger, if any."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import func, select

    from stock.models import LedgerEntry

    with session_factory(engine, read_only=True)() as s:
        last = s.scalar(select(func.max(LedgerEntry.occurred_at)))
    return last.astimezone(ZoneInfo(zone)).date() if last is not None else None


def _summary(engine, conf: Settings) -> None:
    """What a facility manager and an auditor would look at first."""
    from sqlalchemy import func, select

    from stock.models import Facility, LedgerEntry
    from stock.queries import expiring, stock_positions

    with session_factory(engine, read_only=True)() as s:
        if s.scalar(select(func.max(LedgerEntry.occurred_at))) is None:
            console.print("the ledger is empty")
            return
        today = conf.today()
        entries = s.scalar(select(func.count()).select_from(LedgerEntry))
        facilities = s.scalar(select(func.count()).select_from(Facility))
        positions = stock_positions(s, today=today, months=conf.amc_months)
        soon = expiring(s, within_days=90, today=today)
        report = chain.verify(s)
    out = [p for p in positions if p.stocked_out]
    low = sorted((p for p in positions if p.months_of_stock is not None and not p.stocked_out),
                 key=lambda p: p.months_of_stock)
    console.print(f"\n[bold]Stock summary as of {today}[/bold]: {entries:,} ledger entries, "
                  f"{facilities} facilities, {len(positions)} facility-items held, "
                  f"{len(out)} stocked out, {len(soon)} lots expiring within 90 days; "
                  f"hash chains {'[green]verified[/green]' if report.ok else '[red]BROKEN[/red]'}")
    table = cli_tables.table("Lowest months of stock", [("facility", "id"), ("item", "id"), ("on hand", "num"),
                                                        ("avg monthly use", "num"), ("months of stock", "num")])
    for p in low[:12]:
        table.add_row(p.facility_code, p.item_code, str(p.on_hand), str(p.amc), str(p.months_of_stock))
    console.print(table)
    if out:
        table = cli_tables.table(_t(cli_language.MSG_STOCKED_OUT, num=len(out)), [("facility", "id"), ("item", "id")])
        for p in out[:12]:
            table.add_row(p.facility_code, p.item_code)
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("sample-data")(sample_data_cmd)
    app.command()(demo)
