"""The ``dawa`` command line, assembled here: the app reads the settings once, at its start, and each
group of sub-commands (web.cli.*, web.replenishment.cli) is registered on it below. Sub-command
modules never import this one. Each command owns its transaction: it commits or rolls back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

import migrations
from stock.db import session_factory
from stock.errors import DawaError
from stock.settings import ensure_secrets, get_settings
from web.cli import alerts, demo, flags, interop, ledger, security, serve
from web.cli import tables as cli_tables
from web.cli.common import DbOption, Run, _engine, _fail, _import, _scan, console, err, progress_bar
from web.replenishment import cli as packs
from web.cli import language as cli_language
from web.cli.language import t as _t

app = typer.Typer(help="Dawa: track medicines from warehouse to patient and catch leakage.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _start(lang: Annotated[Optional[str], typer.Option(
        "--lang", envvar="DAWA_LANG", help="Language of tables and messages: en, fr or ar")] = None) -> None:
    """Dawa: track medicines from warehouse to patient and catch leakage."""
    cli_language.choose(lang)
    Run.start(get_settings)  # read once; commands reach them through web.cli.common.settings()


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
    from anomaly.evaluate import evaluate as run_evaluation
    from anomaly.evaluate import format_report
    from sample_data.requisitions import NOISE
    from stock.importer import ImportFailed

    if requisition_noise not in NOISE:
        _fail(f"--requisition-noise must be one of {', '.join(NOISE)} (got {requisition_noise!r})", 2)

    with progress_bar(quiet=quiet) as (bar, progress):
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


flags.register(app)  # flags list, export, verdict, precision
ledger.register(app)  # ledger verify, head, check
demo.register(app)  # sample-data, demo
interop.register(app)  # export, fhir, dhis2
serve.register(app)  # serve, users
alerts.register(app)  # scheduler, jobs, alerts
security.register(app, ledger.ledger_app)  # db roles, ledger witness, audit
packs.register(app)  # packs of items


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
