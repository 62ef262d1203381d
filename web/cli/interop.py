"""``dawa export``, ``dawa fhir`` and ``dawa dhis2``: data for the rest of the health system.

Registered on the main ``dawa`` app by ``register``; the work itself is in web/interop/, in
functions that take a Session, so the web API can offer the same.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer

from stock.db import session_factory
from stock.errors import DawaError
from web.cli import common as cli

fhir_app = typer.Typer(help="Exchange FHIR (R4 or R5) JSON bundles.", no_args_is_help=True,
                       pretty_exceptions_enable=False)
dhis2_app = typer.Typer(help="Send monthly stock aggregates to DHIS2.", no_args_is_help=True,
                        pretty_exceptions_enable=False)

DbOption = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: DAWA_DATABASE_URL)")]
SinceOpt = Annotated[Optional[str], typer.Option(
    help="From this date (midnight in DAWA_DEFAULT_TIMEZONE) or timestamp with offset")]
UntilOpt = Annotated[Optional[str], typer.Option(
    help="To this date, included, or before this timestamp with offset")]



def parse_bound(text: str | None, *, end: bool, option: str) -> datetime | None:
    """A date means a whole day in the default zone (``--until`` includes it); a timestamp needs
    an offset."""
    if not text:
        return None
    zone = ZoneInfo(cli.settings().default_timezone)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(0), tzinfo=zone)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        cli._fail(f"{option} {text!r} is not a date (2026-03-01) or a timestamp with offset", 2)
    if value.tzinfo is None:
        cli._fail(f"{option} {text!r} needs a zone offset (e.g. +02:00 or Z)", 2)
    return value


def export_cmd(kind: Annotated[str, typer.Argument(help="on-hand, stock-card, flags or dataset")],
               out: Annotated[Path, typer.Option(help="File to write (dataset as csv: a folder)")],
               fmt: Annotated[Optional[str], typer.Option(
                   "--format", help="xlsx or csv (default: from the --out file's suffix; "
                                    "dataset: a folder of CSV files unless --out ends in .xlsx)")] = None,
               facility: Annotated[Optional[str], typer.Option(help="Facility code")] = None,
               item: Annotated[Optional[str], typer.Option(help="Item code (stock card: required)")] = None,
               region: Annotated[Optional[str], typer.Option(help="Region (on hand, flags)")] = None,
               since: SinceOpt = None,
               until: UntilOpt = None,
               detector: Annotated[Optional[str], typer.Option(help="Flags: detector")] = None,
               severity: Annotated[Optional[str], typer.Option(help="Flags: low, medium or high")] = None,
               status: Annotated[Optional[str], typer.Option(help="Flags: review status")] = None,
               clear_cards: Annotated[bool, typer.Option(
                   "--clear-cards", help="Dataset: health cards in clear instead of pseudonyms, so that the copy "
                                         "imports back to the same hash chains (needs --by; audited)")] = False,
               by: Annotated[Optional[str], typer.Option(
                   help="With --clear-cards: the national auditor or admin taking the cards out")] = None,
               db: DbOption = None):
    """Write stock on hand, a stock card or flags as a spreadsheet (.xlsx) or CSV; or the whole data
    set (master data, ledger, stock reports) in the data contract's form, for `dawa import`."""
    from web.interop import spreadsheets

    if kind == "dataset":
        filters = dict(facility=facility, item=item, region=region, since=since, until=until, detector=detector,
                       severity=severity, status=status)
        used = [f"--{k}" for k, v in filters.items() if v]
        if used:
            cli._fail(f"a dataset export is the whole database, so that it imports back whole; "
                      f"{', '.join(used)} does not apply", 2)
        return _export_dataset(cli, out, fmt, db, clear_cards=clear_cards, by=by)
    if clear_cards or by:
        cli._fail("--clear-cards and --by apply to a dataset export (flags: `dawa flags export`)", 2)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in spreadsheets.FORMATS:
        cli._fail(f"--format must be xlsx or csv (got {fmt or 'nothing'!r})", 2)
    if kind not in spreadsheets.KINDS:
        cli._fail(f"unknown export {kind!r}: choose one of {', '.join(spreadsheets.KINDS)}", 2)
    if kind == "stock-card" and not (facility and item):
        cli._fail("a stock card needs --facility and --item", 2)
    lo, hi = parse_bound(since, end=False, option="--since"), parse_bound(until, end=True, option="--until")
    with session_factory(cli._engine(db), read_only=True)() as s:
        try:
            count = spreadsheets.write(s, kind, fmt, out, settings=cli.settings(), facility_code=facility,
                                       item_code=item, region=region, since=lo, until=hi, detector=detector,
                                       severity=severity, status=status)
        except DawaError as exc:
            cli._fail(str(exc))
    cli.console.print(f"{count} rows of {kind} written to {out}")


def _export_dataset(cli, out: Path, fmt: str | None, db: str | None, *, clear_cards: bool = False,
                    by: str | None = None) -> None:
    from web.interop import dataset

    fmt = (fmt or ("xlsx" if out.suffix.lower() == ".xlsx" else "csv")).lower()
    if fmt not in dataset.FORMATS:
        cli._fail(f"--format must be xlsx or csv (got {fmt!r})", 2)
    if fmt == "xlsx" and out.suffix.lower() != ".xlsx":
        cli._fail(f"a workbook is written to a file ending in .xlsx (got {str(out)!r})", 2)
    if fmt == "csv" and out.exists() and not out.is_dir():
        cli._fail(f"{out} is a file; a dataset as CSV is written to a folder", 2)
    engine = cli._engine(db)
    if engine.dialect.name == "postgresql":  # one snapshot for every file, whatever is written meanwhile
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    if clear_cards:
        from web.clear_exports import clear_card_exporter, record_clear_export

        with session_factory(cli._engine(db))() as s:
            try:
                user = clear_card_exporter(s, by)
            except DawaError as exc:
                cli._fail(str(exc), 2)
            from sqlalchemy import func, select

            from stock.models import LedgerEntry, Patient

            record_clear_export(s, user, "dataset", rows=s.scalar(select(func.count()).select_from(LedgerEntry)),
                                patients=s.scalar(select(func.count()).select_from(Patient)))
        key = None
    else:
        if by:
            cli._fail("--by goes with --clear-cards", 2)
        key = cli._patient_key()
    with session_factory(engine, read_only=True)() as s:
        result = dataset.write(s, out, fmt, key=key, default_zone=cli.settings().default_timezone,
                               clear_cards=clear_cards)
    for facility, n in sorted(result.out_of_order.items()):
        cli.err.print(f"note: {facility}: {n} entries were recorded after later-dated ones; import applies rows "
                      "in occurred_at order, so this facility's hash chain will not be reproduced",
                      highlight=False, markup=False)
    cli.console.print(f"data set written to {out}: {result}"
                      + ("; patients named by pseudonym" if result.pseudonymous else "; health cards in clear"))


@fhir_app.command("export")
def fhir_export(out: Annotated[Path, typer.Option(help="File to write the Bundle to")],
                facility: Annotated[Optional[str], typer.Option(help="Facility code")] = None,
                since: Annotated[Optional[str], typer.Option(
                    help="Recorded from this date or timestamp with offset (the last sync: an incremental pull)")] = None,
                until: Annotated[Optional[str], typer.Option(
                    help="Recorded up to this date, included, or before this timestamp with offset")] = None,
                occurred_from: Annotated[Optional[str], typer.Option(
                    help="Moved from this date or timestamp with offset")] = None,
                occurred_to: Annotated[Optional[str], typer.Option(
                    help="Moved up to this date, included, or before this timestamp with offset")] = None,
                version: Annotated[str, typer.Option(help="R4 or R5 (InventoryReport for counts is R5 only)")] = "R4",
                kind: Annotated[Optional[list[str]], typer.Option(
                    help="Only this kind (repeatable): dispense, receipt, transfer_in, transfer_out, count, "
                         "stock_report")] = None,
                patient_ids: Annotated[str, typer.Option(
                    help="pseudonym (keyed HMAC of the health card, DAWA_PATIENT_ID_KEY) or card: health cards "
                         "in the clear, for a receiving system that must know who the patient is (needs --by)")] = "pseudonym",
                by: Annotated[Optional[str], typer.Option(
                    "--by", help="With --patient-ids card: the national auditor or admin taking the cards out "
                                 "(recorded in the audit trail)")] = None,
                db: DbOption = None):
    """Export dispensing, deliveries, counts and monthly reports as a FHIR transaction Bundle.
    Patients are named by pseudonym unless --patient-ids card is given, by a user named with --by whom
    the access rules let take health cards out; that export is recorded in the audit trail."""
    from web.clear_exports import clear_card_exporter, record_clear_export
    from web.interop.fhir import write_bundle

    if patient_ids == "card":
        if not by:
            cli._fail("--patient-ids card needs --by USER: the national auditor or admin taking the cards out", 2)
        with session_factory(cli._engine(db))() as s:
            try:
                clear_card_exporter(s, by)
            except DawaError as exc:
                cli._fail(str(exc), 2)
    elif by:
        cli._fail("--by goes with --patient-ids card", 2)
    bounds = dict(since=parse_bound(since, end=False, option="--since"),
                  until=parse_bound(until, end=True, option="--until"),
                  occurred_since=parse_bound(occurred_from, end=False, option="--occurred-from"),
                  occurred_until=parse_bound(occurred_to, end=True, option="--occurred-to"))
    tmp = out.with_name(out.name + ".part")
    with session_factory(cli._engine(db), read_only=True)() as s:
        try:
            with tmp.open("wb") as f:
                result = write_bundle(s, f, settings=cli.settings(), version=version, facility_code=facility,
                                      kinds=kind, patient_ids=patient_ids, **bounds)
        except DawaError as exc:
            tmp.unlink(missing_ok=True)
            cli._fail(str(exc))
    if patient_ids == "card":  # recorded before the file is where it was asked for
        with session_factory(cli._engine(db))() as s:
            record_clear_export(s, clear_card_exporter(s, by), "fhir", rows=sum(result.counts.values()),
                                patients=result.counts.get("Patient", 0))
    tmp.replace(out)
    for note in result.skipped:
        cli.err.print(f"note: {note}", highlight=False, markup=False)
    summary = ", ".join(f"{n} {t}" for t, n in sorted(result.counts.items())) or "no resources"
    cli.console.print(f"FHIR {version.upper()} bundle written to {out}: {summary}")


@fhir_app.command("import")
def fhir_import(file: Annotated[Path, typer.Argument(help="A FHIR Bundle (JSON) of MedicationDispense")],
                operator: Annotated[str, typer.Option(
                    help="Your Dawa user name: every dispense is recorded by you (a performer the bundle "
                         "names is kept as the source system's user, not as the author)")],
                db: DbOption = None):
    """Record a Bundle's MedicationDispense resources as dispensing: all or nothing."""
    from sqlalchemy import select

    from stock.models import User
    from web.interop.fhir import FhirImportFailed, import_bundle

    try:
        data = file.read_bytes()
    except OSError as exc:
        cli._fail(f"{file}: cannot read: {exc.strerror or exc}", 2)
    with session_factory(cli._engine(db))() as s:
        user = s.scalars(select(User).where(User.username == operator)).one_or_none()
        if user is None or not user.active:
            cli._fail(f"--operator {operator!r} is not an active Dawa user", 2)
        try:
            report = import_bundle(s, data, imported_by=user.username, systems=cli.settings().fhir)
            s.commit()
        except FhirImportFailed as exc:
            s.rollback()
            for problem in exc.problems:
                cli.err.print(f"{file}: {problem}", highlight=False, markup=False)
            cli._fail(f"{len(exc.problems)} problem(s) in {file}; nothing was imported")
    for line in report.skipped:
        cli.err.print(f"{file}: {line}", highlight=False, markup=False)
    notes = "".join(f"; {n} {code.replace('_', ' ')}" for code, n in sorted(report.notes.items()))
    chosen = f"; {report.lots_chosen} lot(s) chosen first-expiry-first-out" if report.lots_chosen else ""
    cli.console.print(f"imported {file}: {report.added} dispensing added, {report.already_present} already "
                      f"present, {len(report.skipped)} entries skipped{notes}{chosen}")


def _mapping(cli, path: Path, verb: str):
    """The mapping file read, or every problem in it shown and the command ended."""
    from web.interop.dhis2_mapping import MappingError, load_mapping

    try:
        return load_mapping(path)
    except MappingError as exc:
        for problem in exc.problems:
            cli.err.print(problem, highlight=False, markup=False)
        cli._fail(f"{len(exc.problems)} problem(s) in {path}; nothing was {verb}", 2)


@dhis2_app.command("export")
def dhis2_export(mapping: Annotated[Path, typer.Option(help="JSON mapping of items and facilities to DHIS2")],
                 period: Annotated[str, typer.Option(help="The month, YYYY-MM")],
                 out: Annotated[Path, typer.Option(help="File to write the dataValueSets payload to")],
                 db: DbOption = None):
    """Write a month's figures (ledger and monthly reports) as DHIS2 dataValueSets JSON."""
    from web.interop.dhis2 import export_data_value_set

    parsed = _mapping(cli, mapping, "written")
    with session_factory(cli._engine(db), read_only=True)() as s:
        try:
            result = export_data_value_set(s, parsed, period, default_zone=cli.settings().default_timezone)
        except DawaError as exc:
            cli._fail(str(exc), 2)
    out.write_text(result.to_json(), encoding="utf-8")
    for line in result.warnings():
        cli.err.print(f"warning: {line}", highlight=False, markup=False)
    cli.console.print(f"{len(result.payload['dataValues'])} data values for {period} written to {out}"
                      + (f"; {len(result.warnings())} warning(s) (listed above)" if result.warnings() else ""))


@dhis2_app.command("push")
def dhis2_push(mapping: Annotated[Path, typer.Option(help="JSON mapping of items and facilities to DHIS2")],
               period: Annotated[str, typer.Option(help="The month, YYYY-MM")],
               operator: Annotated[str, typer.Option(help="Who sends it, recorded with the push")] = "cli",
               db: DbOption = None):
    """Send a month's figures to the DHIS2 server of DAWA_DHIS2__URL and show its import summary."""
    from web.interop.dhis2_push import push

    parsed = _mapping(cli, mapping, "sent")
    with session_factory(cli._engine(db))() as s:
        try:
            outcome = push(s, cli.settings(), parsed, period, pushed_by=operator)
            s.commit()
        except DawaError as exc:
            cli._fail(str(exc), 2)
    for line in outcome.export.warnings():
        cli.err.print(f"not sent as mapped: {line}", highlight=False, markup=False)
    first, *conflicts = outcome.lines()
    for line in conflicts:
        cli.err.print(line, highlight=False, markup=False)
    if outcome.record.status in ("FAILED", "ERROR"):
        cli._fail(first)
    cli.console.print(first, highlight=False, markup=False)


@dhis2_app.command("pushes")
def dhis2_pushes(limit: Annotated[int, typer.Option(help="How many, newest first")] = 20, db: DbOption = None):
    """The recent pushes to DHIS2 with their import summaries and conflicts."""
    import json

    from web.interop.dhis2_push import recent

    with session_factory(cli._engine(db), read_only=True)() as s:
        for r in recent(s, limit):
            cli.console.print(f"{r.at:%Y-%m-%d %H:%M} {r.period} {r.status} by {r.pushed_by} to {r.server}: "
                              f"{r.sent} sent, {r.imported} imported, {r.updated} updated, {r.ignored} ignored"
                              + (f"; {r.message}" if r.message else ""), highlight=False, markup=False)
            for c in json.loads(r.conflicts or "[]"):
                cli.console.print(f"  conflict: {c.get('object', '?')}: {c.get('value', '')}",
                                  highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``dawa`` app."""
    app.command("export")(export_cmd)
    app.add_typer(fhir_app, name="fhir")
    app.add_typer(dhis2_app, name="dhis2")
