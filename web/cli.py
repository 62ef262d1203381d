"""The ``dawa`` command line. Each command owns its transaction: it commits or rolls back."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

import migrations
from stock import balances, chain
from stock.db import make_engine, session_factory
from stock.errors import DawaError
from stock.settings import ensure_secrets, get_settings
from web import cli_language, cli_tables
from web.cli_language import t as _t

app = typer.Typer(help="Dawa: track medicines from warehouse to patient and catch leakage.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
flags_app = typer.Typer(help="Review, export and decide flags.", no_args_is_help=True,
                        pretty_exceptions_enable=False)
app.add_typer(flags_app, name="flags")
ledger_app = typer.Typer(help="Verify and inspect the ledger.", no_args_is_help=True,
                         pretty_exceptions_enable=False)
app.add_typer(ledger_app, name="ledger")
console = Console()
# Errors name files and paths: never wrap them mid-word, so they can be read and searched whole.
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: DAWA_DATABASE_URL)")]
ClearCardsOpt = Annotated[bool, typer.Option("--clear-cards", help="Health cards in clear instead of pseudonyms "
                                             "(needs --by; recorded in the audit trail)")]
ByOpt = Annotated[Optional[str], typer.Option("--by", help="With --clear-cards: the national auditor or admin "
                                              "taking the cards out")]


def _patient_key() -> str:
    """The install's patient key (what exports name patients by); fails the command without one."""
    from stock.pseudonyms import NoPatientKey, patient_key

    try:
        return patient_key(get_settings())
    except NoPatientKey as exc:
        _fail(str(exc))


def _engine(db: str | None, *, require_schema: bool = True):
    """The database to work on; refuses one that `dawa init` has not brought up to date."""
    engine = make_engine(db or get_settings().database_url)
    if require_schema:
        try:
            current = migrations.is_current(engine)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad URL, unreadable file
            _fail(f"cannot open database {engine.url.render_as_string(hide_password=True)}: {exc}")
        if not current:
            _fail(f"database {engine.url.render_as_string(hide_password=True)} is not initialised "
                  "or is out of date: run `dawa init` first")
    return engine


@app.callback()
def _language(lang: Annotated[Optional[str], typer.Option(
        "--lang", envvar="DAWA_LANG", help="Language of tables and messages: en, fr or ar")] = None):
    """Dawa: track medicines from warehouse to patient and catch leakage."""
    cli_language.choose(lang)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]{cli_language.t(cli_language.MSG_ERROR)}[/red] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def init(db: DbOption = None,
         env_file: Annotated[Path, typer.Option(help="Where generated secrets are written")] = Path(".env")):
    """Create or upgrade the database schema, and generate this install's secrets if absent."""
    written = ensure_secrets(env_file)
    if written:
        console.print(f"generated {', '.join(written)} in {env_file}")
    engine = _engine(db, require_schema=False)
    migrations.upgrade(engine)
    console.print(f"database ready: {engine.url.render_as_string(hide_password=True)}")


@app.command("import")
def import_cmd(folder: Annotated[Path, typer.Argument(
                   help="Data set folder, or one .xlsx workbook with a sheet per file (DATA_CONTRACT.md)")],
               db: DbOption = None,
               quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False):
    """Import a data set folder or workbook: all or nothing, every problem reported as file:line: column:
    message (a workbook's as BOOK.xlsx[sheet]:row: column: message)."""
    report = _import(folder, _engine(db), quiet=quiet)
    console.print(
        f"imported {folder}: {report.facilities} facilities, {report.items} items, "
        f"{report.patients} patients, {report.prescriptions} prescriptions; "
        f"{report.entries_added} ledger entries added, {report.entries_already_present} already present"
        + (f"; {report.unregistered_patients} health cards not in the register recorded as unregistered"
           if report.unregistered_patients else "")
        + (f"; {report.stock_reports}" if report.stock_reports.rows else ""))


def _import(folder: Path, engine, *, quiet: bool = False):
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from stock.importer import ImportFailed, import_dataset

    with Progress(TextColumn("{task.description:<22}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=err, disable=quiet, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        with session_factory(engine)() as s:
            try:
                report = import_dataset(s, folder, progress=progress)
                s.commit()
            except ImportFailed as exc:
                s.rollback()
                bar.stop()
                for problem in exc.problems:
                    err.print(str(problem), highlight=False, markup=False)
                _fail(f"{len(exc.problems)} problem(s) in {folder}; nothing was imported")
    return report


@app.command("stock")
def stock_cmd(db: DbOption = None,
              facility: Annotated[Optional[str], typer.Option(help="Facility code")] = None,
              item: Annotated[Optional[str], typer.Option(help="Item code")] = None,
              region: Annotated[Optional[str], typer.Option(help="Region")] = None,
              by_lot: Annotated[bool, typer.Option("--by-lot", help="One row per lot")] = False,
              limit: Annotated[int, typer.Option(help="At most this many rows")] = 50):
    """Stock on hand, by facility and item (or lot)."""
    from stock.queries import on_hand

    with session_factory(_engine(db), read_only=True)() as s:
        try:
            rows = on_hand(s, facility_code=facility, item_code=item, region=region)
        except DawaError as exc:
            _fail(str(exc))
    table = cli_tables.table("Stock on hand", [("facility", "id"), ("item", "id"), ("name", "text"),
                                               *((("lot", "id"), ("expiry", "id")) if by_lot else ()),
                                               ("on hand", "num"), ("unit", "id")])
    if by_lot:
        shown = [(r.facility_code, r.item_code, r.item_name, r.lot_number or "-",
                  str(r.expiry_date or "-"), str(r.on_hand), cli_language.label("unit", r.unit)) for r in rows]
    else:
        totals: dict[tuple, list] = {}
        for r in rows:
            key = (r.facility_code, r.item_code)
            totals.setdefault(key, [r.facility_code, r.item_code, r.item_name, 0, r.unit])[3] += r.on_hand
        shown = [(a, b, c, str(d), cli_language.label("unit", e)) for a, b, c, d, e in totals.values()]
    for row in shown[:limit]:
        table.add_row(*row)
    console.print(table)
    if len(shown) > limit:
        console.print(_t(cli_language.MSG_MORE_ROWS, num=len(shown) - limit))


@ledger_app.command("verify")
def ledger_verify(db: DbOption = None,
                  against: Annotated[Optional[Path], typer.Option(
                      help="A heads file from `dawa ledger head`, or signed by the verify job: prove "
                           "nothing was rewritten or cut off since")] = None,
                  public_key: Annotated[Optional[Path], typer.Option(
                      help="Public key the heads were signed with (default: DAWA_WITNESS_PUBLIC_KEY)")] = None):
    """Recompute every facility's hash chain; name the first altered, deleted or inserted entry.
    Against a signed heads file, its signature is checked first, and the audit trail too."""
    from web import audit_chain, witness

    audit_head = None
    try:
        heads = chain.read_heads(against) if against else None
        if against is not None and '"signature"' in against.read_text(encoding="utf-8"):
            key = public_key or get_settings().witness_public_key
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


@app.command()
def scan(db: DbOption = None,
         force: Annotated[bool, typer.Option(help="Scan even if the ledger has not changed")] = False,
         detector: Annotated[Optional[list[str]], typer.Option(help="Run only this detector (repeatable)")] = None,
         quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False):
    """Run every detector over the ledger and keep the flags (no duplicates on re-run)."""
    report = _scan(_engine(db), force=force, only=detector, quiet=quiet)
    if report.skipped:
        console.print(_t(cli_language.MSG_SCAN_NOTHING, scan=report.scan_id, flags=report.flags_total))
        return
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
    console.print(_t(cli_language.MSG_SCAN_DONE, scan=report.scan_id, entries=f"{report.entries:,}", new=report.new,
                     updated=report.updated, suppressed=report.suppressed, flags=report.flags_total)
                  + f"\n[dim]{timing}[/dim]")


def _scan(engine, *, force: bool = False, only=None, quiet: bool = False):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from anomaly import scan as scanning

    key = _patient_key()  # flags' reasons name patients by pseudonym
    with Progress(TextColumn("{task.description:<16}"), BarColumn(), TimeElapsedColumn(),
                  console=err, disable=quiet, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        with session_factory(engine)() as s:
            report = scanning.run(s, force=force, only=only, progress=progress, patient_key=key)
            s.commit()
    return report


@app.command()
def evaluate(dataset: Annotated[Path, typer.Argument(help="Data set folder with its truth.csv")],
             workdir: Annotated[Optional[Path], typer.Option(
                 help="Keep the scratch database here (default: a temporary folder)")] = None,
             truth: Annotated[Optional[Path], typer.Option(
                 help="Ground truth file (default: truth.csv in the data set folder)")] = None,
             requisitions: Annotated[Optional[int], typer.Option(
                 help="Also inject the requisition scenarios with this seed after the import and score the "
                      "requisition detector against them (requisitions are not in a data set's files)")] = None,
             requisition_noise: Annotated[str, typer.Option(
                 help="How far ordinary requisitions stray from the suggestion: low or high")] = "low",
             quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False):
    """Measure detection against a data set's ground truth, beside naive baselines, then simulate
    two review rounds (verdicts from the truth re-rank the flags)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from anomaly.evaluate import evaluate as run_evaluation
    from anomaly.evaluate import format_report
    from sample_data.requisitions import NOISE
    from stock.importer import ImportFailed

    if requisition_noise not in NOISE:
        _fail(f"--requisition-noise must be one of {', '.join(NOISE)} (got {requisition_noise!r})", 2)

    with Progress(TextColumn("{task.description:<22}"), BarColumn(), TimeElapsedColumn(),
                  console=err, disable=quiet, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        try:
            evaluation = run_evaluation(dataset, workdir=workdir, progress=progress, truth=truth,
                                        requisitions=None if requisitions is None else (requisitions,
                                                                                        requisition_noise))
        except ImportFailed as exc:
            bar.stop()
            for problem in exc.problems:
                err.print(str(problem), highlight=False, markup=False)
            _fail(f"{len(exc.problems)} problem(s) in {dataset}; nothing was evaluated")
        except DawaError as exc:
            _fail(str(exc))
    typer.echo(format_report(evaluation), nl=False)


RegionOpt = Annotated[Optional[str], typer.Option(help="Region")]
FacilityOpt = Annotated[Optional[str], typer.Option(help="Facility code")]
DetectorOpt = Annotated[Optional[str], typer.Option(help="Detector name")]
SeverityOpt = Annotated[Optional[str], typer.Option(help="low, medium or high")]
StatusOpt = Annotated[Optional[str], typer.Option(help="open, assigned, confirmed, dismissed or escalated")]


@flags_app.command("list")
def flags_list(db: DbOption = None,
               region: RegionOpt = None,
               facility: FacilityOpt = None,
               detector: DetectorOpt = None,
               severity: SeverityOpt = None,
               status: StatusOpt = None,
               limit: Annotated[int, typer.Option(help="At most this many")] = 20):
    """Flags, most suspicious first, patients by pseudonym."""
    from anomaly.export import contract_rows

    with session_factory(_engine(db), read_only=True)() as s:
        rows = contract_rows(s, key=_patient_key(), region=region, facility=facility, detector=detector,
                             severity=severity, status=status, limit=limit)
    _flag_table(rows, _t(cli_language.MSG_FLAGS_SHOWN, num=len(rows)))


def _flag_table(rows, title: str) -> None:
    from web.cli_tables import flag_table

    flag_table(console, rows, title)


@flags_app.command("export")
def flags_export(db: DbOption = None,
                 fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
                 out: Annotated[Optional[Path], typer.Option(help="File to write (default: standard output)")] = None,
                 region: RegionOpt = None,
                 facility: FacilityOpt = None,
                 detector: DetectorOpt = None,
                 severity: SeverityOpt = None,
                 status: StatusOpt = None,
                 clear_cards: ClearCardsOpt = False,
                 by: ByOpt = None):
    """Export flags in the data contract's format, most suspicious first, patients by pseudonym
    (with --clear-cards --by USER: by health card, recorded in the audit trail)."""
    from anomaly.export import contract_rows, to_csv, to_json

    if fmt not in ("csv", "json"):
        _fail(f"--format must be csv or json, not {fmt!r}", 2)
    filters = dict(region=region, facility=facility, detector=detector, severity=severity, status=status)
    with session_factory(_engine(db))() as s:
        try:
            if clear_cards:
                from web.clear_exports import clear_card_exporter, record_clear_export

                user = clear_card_exporter(s, by)
                rows = contract_rows(s, key=_patient_key(), clear_cards=True, **filters)
                record_clear_export(s, user, "flags", rows=len(rows),
                                    patients=len({r.subject_id for r in rows if r.subject == "patient"}))
            else:
                rows = contract_rows(s, key=_patient_key(), **filters)
        except DawaError as exc:
            _fail(str(exc), 2)
    body = to_csv(rows) if fmt == "csv" else to_json(rows)
    if out:
        out.write_text(body, encoding="utf-8")
        err.print(f"{len(rows)} flags written to {out}")
    else:
        sys.stdout.write(body)


@flags_app.command("verdict")
def flags_verdict(flag_id: Annotated[str, typer.Argument(help="The flag: its id, or its short id from `flags list`")],
                  verdict: Annotated[str, typer.Argument(help="confirmed, dismissed or escalated")],
                  by: Annotated[str, typer.Option(help="The auditor's user name")],
                  comment: Annotated[Optional[str], typer.Option(help="Why")] = None,
                  db: DbOption = None):
    """Record an auditor's verdict through the review state machine (anomaly.workflow), each step
    on the flag's timeline: an open flag is first assigned to the auditor giving it. A dismissed
    flag is not raised again for the same evidence."""
    from anomaly.models import VERDICTS, Flag
    from anomaly.workflow import VERDICT_OF, act

    action = {v: a for a, v in VERDICT_OF.items()}.get(verdict)
    if action is None:
        _fail(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    with session_factory(_engine(db))() as s:
        try:
            now = datetime.now(timezone.utc)
            flag_id = _flag_id(s, flag_id)
            flag = s.get(Flag, flag_id)
            if flag is not None and flag.status == "open":
                act(s, flag_id, "assign", by=by, assignee=by, now=now)
            act(s, flag_id, action, by=by, comment=comment, now=now)
            s.commit()
        except DawaError as exc:
            _fail(str(exc))
    console.print(f"flag {flag_id}: {verdict}")


def _flag_id(session, given: str) -> str:
    """The flag a command names: its whole id, or (as `dawa flags list` shows them) the start of
    one that no other flag shares."""
    from sqlalchemy import select

    from anomaly.models import Flag

    if len(given) < cli_tables.SHORT_ID or session.get(Flag, given) is not None:
        return given
    found = session.scalars(select(Flag.flag_id).where(Flag.flag_id.startswith(given, autoescape=True))
                            .order_by(Flag.flag_id).limit(2)).all()
    if len(found) > 1:
        _fail(f"{given!r} is the start of several flags' ids ({found[0]}, {found[1]}, ...): give more of it", 2)
    return found[0] if found else given


@flags_app.command("precision")
def flags_precision(db: DbOption = None):
    """Each detector's precision, measured from auditors' verdicts."""
    from anomaly.flags import PRIOR_CONFIRMED, PRIOR_TOTAL, detector_precision

    with session_factory(_engine(db), read_only=True)() as s:
        measured = detector_precision(s)
    table = cli_tables.table("Detector precision from verdicts", [
        ("detector", "id"), ("confirmed", "num"), ("dismissed", "num"), ("precision (smoothed)", "num")])
    for name, (p, c, x) in sorted(measured.items()):
        table.add_row(name, str(c), str(x), f"{p:.2f}")
    console.print(table)
    console.print("[dim]" + _t(cli_language.MSG_NO_VERDICTS, confirmed=f"{PRIOR_CONFIRMED:.0f}",
                                total=f"{PRIOR_TOTAL:.0f}") + "[/dim]")


@app.command("sample-data")
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
    return get_settings().today() - timedelta(days=1)


@app.command()
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
    ensure_secrets(Path(".env"))
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
    last = _last_day(engine)
    if last is not None and last < _yesterday():
        console.print(f"[yellow]the demo data end on {last}[/yellow]: remove {folder} and run the demo again "
                      "for data up to yesterday")
    _summary(engine)
    report = _scan(engine)
    from anomaly.export import contract_rows

    with session_factory(engine, read_only=True)() as s:
        top = contract_rows(s, key=_patient_key(), limit=10)
    console.print(f"\nscan: {report.flags_total} flags")
    _flag_table(top, _t(cli_language.MSG_TOP_FLAGS))
    console.print(f"\ndatabase: {url}   (try: dawa stock --db {url} --facility ...)")
    if serve:
        from web.cli_web import serve_demo

        serve_demo(engine, url, port)


def _last_day(engine) -> date | None:
    """The local day of the latest movement in the ledger, if any."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import func, select

    from stock.models import LedgerEntry

    with session_factory(engine, read_only=True)() as s:
        last = s.scalar(select(func.max(LedgerEntry.occurred_at)))
    return last.astimezone(ZoneInfo(get_settings().default_timezone)).date() if last is not None else None


def _summary(engine) -> None:
    """What a facility manager and an auditor would look at first."""
    from sqlalchemy import func, select

    from stock.models import Facility, LedgerEntry
    from stock.queries import expiring, stock_positions

    with session_factory(engine, read_only=True)() as s:
        if s.scalar(select(func.max(LedgerEntry.occurred_at))) is None:
            console.print("the ledger is empty")
            return
        today = get_settings().today()
        entries = s.scalar(select(func.count()).select_from(LedgerEntry))
        facilities = s.scalar(select(func.count()).select_from(Facility))
        positions = stock_positions(s, today=today, months=get_settings().amc_months)
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


from web.cli_interop import register as _register_interop  # noqa: E402 - export, fhir, dhis2 commands

_register_interop(app)


from web.cli_web import register as _register_web  # noqa: E402 - serve and users commands

_register_web(app)


from web.cli_alerts import register as _register_alerts  # noqa: E402 - scheduler, jobs and alerts commands

_register_alerts(app)

from web.cli_security import register as _register_security  # noqa: E402 - db roles, witnessed heads, audit

_register_security(app, ledger_app)


from web.replenishment.cli import register as _register_packs  # noqa: E402 - pack sizes of items

_register_packs(app)


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
