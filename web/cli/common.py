"""What every `dawa` command shares: the consoles, the --db option, the settings this run read at
its start, opening the database, failing with a message, and the import and scan that both their
own commands and the demo run.

The app (web.cli.main) reads the settings once, in its callback, before the command runs (``Run``);
a command reaches them through ``settings()`` and hands them on as a parameter to the services.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

import migrations
from stock.db import make_engine, session_factory
from stock.settings import Settings
from web.cli import language as cli_language

console = Console()
# Errors name files and paths: never wrap them mid-word, so they can be read and searched whole.
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: DAWA_DATABASE_URL)")]
ClearCardsOpt = Annotated[bool, typer.Option("--clear-cards", help="Health cards in clear instead of pseudonyms "
                                             "(needs --by; recorded in the audit trail)")]
ByOpt = Annotated[Optional[str], typer.Option("--by", help="With --clear-cards: the national auditor or admin "
                                              "taking the cards out")]


@dataclass
class Run:
    """What the app hands every command of one run: the settings read at its start, and the way to
    read them again (after `dawa demo` wrote fresh secrets to .env)."""

    load: Callable[[], Settings]
    settings: Settings

    @classmethod
    def start(cls, load: Callable[[], Settings]) -> "Run":
        """Called once by the app's callback, before the command runs."""
        run = cls(load, load())
        _RUN.set(run)
        return run


_RUN: ContextVar[Run | None] = ContextVar("dawa_cli_run", default=None)


def _run() -> Run:
    run = _RUN.get()
    if run is None:
        raise RuntimeError("no settings: run the command through the `dawa` app (web.cli.main.app)")
    return run


def settings() -> Settings:
    """The settings read when this `dawa` command started (web.cli.main's callback)."""
    return _run().settings


def reread_settings() -> Settings:
    """Read the settings again, for the rest of this command: after it wrote secrets to .env."""
    run = _run()
    run.settings = run.load()
    return run.settings


def _patient_key() -> str:
    """The install's patient key (what exports name patients by); fails the command without one."""
    from stock.pseudonyms import NoPatientKey, patient_key

    try:
        return patient_key(settings())
    except NoPatientKey as exc:
        _fail(str(exc))


def _engine(db: str | None, *, require_schema: bool = True):
    """The database to work on; refuses one that `dawa init` has not brought up to date."""
    engine = make_engine(db or settings().database_url)
    if require_schema:
        try:
            current = migrations.is_current(engine)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad URL, unreadable file
            _fail(f"cannot open database {engine.url.render_as_string(hide_password=True)}: {exc}")
        if not current:
            _fail(f"database {engine.url.render_as_string(hide_password=True)} is not initialised "
                  "or is out of date: run `dawa init` first")
    return engine


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]{cli_language.t(cli_language.MSG_ERROR)}[/red] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def progress_bar(*, quiet: bool = False, label_width: int = 22, percent: bool = False):
    """A transient progress bar on stderr, one line per phase. Yields ``(bar, progress)``: the bar (to
    stop it before printing problems) and the ``progress(phase, done, total)`` callback the
    importer, the scan and the evaluation report to."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = [TextColumn(f"{{task.description:<{label_width}}}"), BarColumn(),
               *([TaskProgressColumn()] if percent else []), TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=quiet, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        yield bar, progress


def _import(folder: Path, engine, *, quiet: bool = False):
    from stock.importer import ImportFailed, import_dataset

    with progress_bar(quiet=quiet, percent=True) as (bar, progress):
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


def _scan(engine, *, force: bool = False, only=None, quiet: bool = False):
    from anomaly import scan as scanning

    key = _patient_key()  # flags' reasons name patients by pseudonym
    with progress_bar(quiet=quiet, label_width=16) as (_, progress):
        with session_factory(engine)() as s:
            report = scanning.run(s, force=force, only=only, progress=progress, patient_key=key)
            s.commit()
    return report
