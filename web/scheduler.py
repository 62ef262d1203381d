"""`dawa scheduler`: the process that runs the alert jobs on their schedules.

It runs on its own, never inside a web worker (each worker would run every job again).
APScheduler 3 keeps the schedules in the application database (SQLAlchemyJobStore, table
``apscheduler_jobs`` created by the migrations), so a restart keeps them: a run missed while the
scheduler was down still happens once (coalesce) if it is less than ``misfire_grace_s`` late.

Two scheduler processes may run against one database (a standby, a mistaken second start): each
run first inserts a ``job_run`` row for its job and scheduled time, and the unique constraint on
the pair lets only one of them through, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from apscheduler.executors.base import run_job as _apscheduler_run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from stock.db import session_factory
from stock.settings import Settings
from web.alerts.jobs import JOBS, Job
from web.alerts.models import SCHEDULER_JOBS_TABLE, JobRun

log = logging.getLogger("dawa.scheduler")

INTERVAL_ANCHOR = datetime(2026, 1, 1, tzinfo=timezone.utc)
"""Interval schedules count from this instant, so every process computes the same run times."""


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class RunOutcome:
    job: str
    scheduled_for: datetime
    ran: bool
    status: str | None = None
    summary: str | None = None
    claimed_by: str | None = None


def run_locked(engine: Engine, settings: Settings, name: str, scheduled_for: datetime,
               now: datetime | None = None) -> RunOutcome:
    """Run job ``name`` for ``scheduled_for`` unless some process has already claimed that run."""
    job = JOBS[name]
    Session = session_factory(engine)
    started = now or datetime.now(timezone.utc)
    runner = runner_name()
    with Session() as s:
        s.add(JobRun(job=name, scheduled_for=scheduled_for, started_at=started, status="running", runner=runner))
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            other = s.scalars(select(JobRun.runner).where(JobRun.job == name,
                                                          JobRun.scheduled_for == scheduled_for)).first()
            log.info("skipped %s for %s: already claimed by %s", name, scheduled_for.isoformat(), other)
            return RunOutcome(name, scheduled_for, False, claimed_by=other)
    with Session() as s:
        try:
            result = job.run(s, settings, now or datetime.now(timezone.utc))
            status, summary = "ok", result.summary()
            if result.errors:
                summary += "\n" + "\n".join(result.errors[:20])
        except Exception:  # noqa: BLE001 - recorded on the run, the scheduler goes on
            s.rollback()
            status, summary = "failed", traceback.format_exc(limit=8)
            log.exception("job %s for %s failed", name, scheduled_for.isoformat())
    with Session() as s:
        row = s.scalars(select(JobRun).where(JobRun.job == name, JobRun.scheduled_for == scheduled_for)).one()
        row.status, row.summary, row.finished_at = status, summary, datetime.now(timezone.utc)
        s.commit()
    log.info("ran %s for %s: %s", name, scheduled_for.isoformat(), summary.splitlines()[0] if summary else status)
    return RunOutcome(name, scheduled_for, True, status, summary)


# --- the APScheduler side ---------------------------------------------------------------------

_context: dict[str, object] = {}


def fire(name: str, scheduled_for: datetime | None = None) -> None:
    """What the job store names as each job's function (``web.scheduler:fire``)."""
    engine, settings = _context["engine"], _context["settings"]
    run_locked(engine, settings, name, scheduled_for or datetime.now(timezone.utc))


class _ScheduledRun:
    """The job as handed to APScheduler's runner, with the scheduled time added to its arguments:
    that time, not the clock, names the run in the lock."""

    def __init__(self, job, run_time: datetime):
        self.id, self.name = job.id, job.name
        self.misfire_grace_time = job.misfire_grace_time
        self.func, self.args = job.func, job.args
        self.kwargs = {**job.kwargs, "scheduled_for": run_time.astimezone(timezone.utc)}

    def __str__(self) -> str:
        return self.name


class LockingExecutor(ThreadPoolExecutor):
    """A thread pool that passes each run its scheduled time."""

    def _do_submit_job(self, job, run_times):
        def callback(f):
            exc = f.exception()
            if exc:
                self._run_job_error(job.id, exc, getattr(exc, "__traceback__", None))
            else:
                self._run_job_success(job.id, f.result())

        run_time = run_times[-1]  # coalesced: only the latest of several missed runs
        f = self._pool.submit(_apscheduler_run_job, _ScheduledRun(job, run_time), job._jobstore_alias,
                              [run_time], self._logger.name)
        f.add_done_callback(callback)


def schedule_zone(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.alerts.timezone or settings.default_timezone)


def trigger_for(job: Job, settings: Settings):
    zone = schedule_zone(settings)
    if settings.alerts.interval_s:
        return IntervalTrigger(seconds=settings.alerts.interval_s, start_date=INTERVAL_ANCHOR, timezone=zone)
    return CronTrigger.from_crontab(getattr(settings.alerts, job.cron_setting), timezone=zone)


def configured_jobs(settings: Settings) -> list[Job]:
    wanted = settings.alerts.jobs
    unknown = set(wanted or ()) - set(JOBS)
    if unknown:
        raise ValueError(f"unknown job(s) {', '.join(sorted(unknown))} in alerts.jobs; jobs are {', '.join(JOBS)}")
    return [j for j in JOBS.values() if not wanted or j.name in wanted]


def build(engine: Engine, settings: Settings) -> BlockingScheduler:
    """A scheduler over the database's job store holding exactly the configured jobs. A job whose
    schedule is unchanged keeps its stored next run time, so a run missed during a restart is made
    up (once); a changed schedule replaces it."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    store = SQLAlchemyJobStore(engine=engine, tablename=SCHEDULER_JOBS_TABLE)
    scheduler = BlockingScheduler(
        jobstores={"default": store},
        executors={"default": LockingExecutor(max_workers=4)},
        job_defaults={"coalesce": True, "misfire_grace_time": settings.alerts.misfire_grace_s, "max_instances": 1},
        timezone=schedule_zone(settings),
    )
    store.start(scheduler, "default")
    jobs = configured_jobs(settings)
    for job in jobs:
        trigger = trigger_for(job, settings)
        stored = store.lookup_job(job.name)
        if stored is not None and repr(stored.trigger) == repr(trigger) and stored.func_ref == f"{__name__}:fire":
            continue
        scheduler.add_job(fire, trigger, args=[job.name], id=job.name, name=job.name, replace_existing=True)
    for stale in store.get_all_jobs():
        if stale.id not in {j.name for j in jobs}:
            store.remove_job(stale.id)
    return scheduler


def serve(engine: Engine, settings: Settings) -> None:
    """Run the scheduler in this process until it is interrupted."""
    import signal

    _context.update(engine=engine, settings=settings)
    scheduler = build(engine, settings)
    # A service manager stops us with SIGTERM: finish the run in progress, then leave.
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("scheduler %s started with %s", runner_name(), ", ".join(j.name for j in configured_jobs(settings)))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
    log.info("scheduler %s stopped", runner_name())


def next_runs(engine: Engine) -> dict[str, datetime | None]:
    """Each stored job's next run time (empty before a scheduler has run)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, next_run_time FROM {SCHEDULER_JOBS_TABLE}"))
        return {i: (datetime.fromtimestamp(t, timezone.utc) if t is not None else None) for i, t in rows}
