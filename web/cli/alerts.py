"""Commands for scheduled alerts: `dawa scheduler`, `dawa jobs list|run`, `dawa alerts prefer|list`."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from sqlalchemy import delete, func, select

from stock.db import session_factory
from web.cli import common as cli
from web.cli import tables as cli_tables

jobs_app = typer.Typer(help="List the scheduled alert jobs, or run one now.", no_args_is_help=True,
                       pretty_exceptions_enable=False)
alerts_app = typer.Typer(help="Who hears of alerts and how; what was sent.", no_args_is_help=True,
                         pretty_exceptions_enable=False)

DbOption = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: DAWA_DATABASE_URL)")]



def scheduler(db: DbOption = None):
    """Run the alert jobs on their schedules, in this process, until interrupted (Ctrl-C)."""
    from web import scheduler as scheduling

    engine = cli._engine(db)
    settings = cli.settings()
    try:
        scheduling.configured_jobs(settings)
    except ValueError as exc:
        cli._fail(str(exc), 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cli.console.print(f"scheduler on {engine.url.render_as_string(hide_password=True)} "
                      f"({'every %ss' % settings.alerts.interval_s if settings.alerts.interval_s else 'cron'}); "
                      "Ctrl-C stops it")
    scheduling.serve(engine, settings)


@jobs_app.command("list")
def jobs_list(db: DbOption = None):
    """Each job: its schedule, its next run (once a scheduler has run) and its last run."""
    from web.alerts.jobs import JOBS
    from web.alerts.models import JobRun
    from web.scheduler import configured_jobs, next_runs, trigger_for

    engine = cli._engine(db)
    settings = cli.settings()
    active = {j.name for j in configured_jobs(settings)}
    upcoming = next_runs(engine)
    with session_factory(engine, read_only=True)() as s:
        last = {}
        for job in JOBS:
            row = s.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.started_at.desc())).first()
            last[job] = row
    table = cli_tables.table("Alert jobs", [("job", "id"), ("schedule", "text"), ("next run", "text"),
                                            ("last run", "text"), ("status", "id"), ("what it does", "text")])
    for name, job in JOBS.items():
        schedule = (f"every {settings.alerts.interval_s}s" if settings.alerts.interval_s
                    else getattr(settings.alerts, job.cron_setting)) if name in active else "(not scheduled)"
        trigger_for(job, settings)  # a bad cron expression shows here, not first in the scheduler
        nxt = upcoming.get(name)
        row = last[name]
        table.add_row(name, schedule, nxt.isoformat(sep=" ", timespec="seconds") if nxt else "-",
                      row.started_at.isoformat(sep=" ", timespec="seconds") if row else "-",
                      row.status if row else "-", job.description)
    cli.console.print(table)


@jobs_app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="scan, stock, verify or digest")], db: DbOption = None):
    """Run one job now, as the scheduler would, and print what it did (exit 1 if it failed)."""
    from web.alerts.jobs import JOBS
    from web.scheduler import run_locked

    if name not in JOBS:
        cli._fail(f"no job {name!r}; jobs are {', '.join(JOBS)}", 2)
    engine = cli._engine(db)
    now = datetime.now(timezone.utc)
    outcome = run_locked(engine, cli.settings(), name, now, now=now)
    if not outcome.ran:
        cli._fail(f"{name} for {now.isoformat()} was already run by {outcome.claimed_by}")
    cli.console.print(outcome.summary, highlight=False, markup=False)
    if outcome.status != "ok":
        cli._fail(f"job {name} failed")


@alerts_app.command("prefer")
def alerts_prefer(username: Annotated[str, typer.Argument(help="The user")],
                  channel: Annotated[str, typer.Argument(help="email, webhook or in_app")],
                  address: Annotated[Optional[str], typer.Option(help="E-mail address or webhook URL")] = None,
                  language: Annotated[Optional[str], typer.Option(help="en, fr or ar (default: the user's)")] = None,
                  mode: Annotated[Optional[str], typer.Option(
                      help="immediate or digest (default: digest for auditors, immediate for others)")] = None,
                  min_severity: Annotated[str, typer.Option(help="low, medium or high")] = "medium",
                  remove: Annotated[bool, typer.Option("--remove", help="Stop this channel")] = False,
                  db: DbOption = None):
    """Set how a user hears of alerts through one channel (a user may have several)."""
    from stock.models import LANGUAGES, User
    from web.access import DIGEST_BY_DEFAULT
    from web.alerts.models import CHANNELS, MODES, SEVERITIES, AlertPreference

    problems = [(channel in CHANNELS, f"channel must be one of {', '.join(CHANNELS)}"),
                (mode is None or mode in MODES, f"--mode must be one of {', '.join(MODES)}"),
                (min_severity in SEVERITIES, f"--min-severity must be one of {', '.join(SEVERITIES)}"),
                (language is None or language in LANGUAGES, f"--language must be one of {', '.join(LANGUAGES)}"),
                (channel == "in_app" or bool(address), f"a {channel} channel needs --address"),
                (channel != "email" or "@" in (address or ""), "--address must be an e-mail address"),
                (channel != "webhook" or (address or "").startswith(("http://", "https://")),
                 "--address must be an http:// or https:// URL")]
    for ok, message in problems:
        if not ok:
            cli._fail(message, 2)
    address = None if channel == "in_app" else address
    with session_factory(cli._engine(db))() as s:
        user = s.scalars(select(User).where(User.username == username)).one_or_none()
        if user is None:
            cli._fail(f"no user {username!r}")
        same = (AlertPreference.user_id == user.id, AlertPreference.channel == channel,
                AlertPreference.address.is_(None) if address is None else AlertPreference.address == address)
        if mode is None:  # auditors read findings in a weekly digest unless they ask for each one
            mode = "digest" if user.role in DIGEST_BY_DEFAULT else "immediate"
        if remove:
            gone = s.execute(delete(AlertPreference).where(*same)).rowcount
            s.commit()
            cli.console.print(f"{username}: {gone} {channel} preference(s) removed")
            return
        pref = s.scalars(select(AlertPreference).where(*same)).one_or_none()
        if pref is None:
            pref = AlertPreference(user_id=user.id, channel=channel, address=address,
                                   created_at=datetime.now(timezone.utc))
            s.add(pref)
        pref.language, pref.mode, pref.min_severity, pref.active = language, mode, min_severity, True
        s.commit()
    cli.console.print(f"{username}: {channel}{' ' + address if address else ''}, {mode}, from {min_severity}"
                      + (f", in {language}" if language else ""))


@alerts_app.command("list")
def alerts_list(db: DbOption = None,
                limit: Annotated[int, typer.Option(help="At most this many")] = 30,
                status: Annotated[Optional[str], typer.Option(help="pending, sent, failed, held or digested")] = None):
    """The alert history, newest first: what was sent to whom, when, how, and the outcome."""
    from stock.models import User
    from web.alerts.models import AlertDelivery

    with session_factory(cli._engine(db), read_only=True)() as s:
        stmt = (select(AlertDelivery, User.username).join(User, User.id == AlertDelivery.user_id)
                .order_by(AlertDelivery.id.desc()).limit(limit))
        if status:
            stmt = stmt.where(AlertDelivery.status == status)
        rows = s.execute(stmt).all()
        total = s.scalar(select(func.count()).select_from(AlertDelivery))
    table = cli_tables.table(f"Alert history ({len(rows)} of {total})", [
        ("when", "text"), ("to", "id"), ("channel", "text"), ("status", "id"), ("tries", "num"), ("title", "text"),
        ("error", "text")])
    for d, username in rows:
        table.add_row(d.created_at.isoformat(sep=" ", timespec="minutes"), username,
                      d.channel + (f" {d.address}" if d.address else ""), d.status, str(d.attempts), d.title,
                      d.error or "")
    cli.console.print(table)


def register(app: typer.Typer) -> None:
    app.command("scheduler")(scheduler)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(alerts_app, name="alerts")


__all__ = ["register", "jobs_app", "alerts_app", "scheduler"]
