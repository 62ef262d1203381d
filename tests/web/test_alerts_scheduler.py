"""The scheduler for real: `dawa scheduler` started as a process on a short interval, its jobs
observed to run; the job-run lock letting one process (or thread) through per scheduled time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from stock.db import session_factory
from tests.conftest import PG_URL
from tests.threads import run_threads
from tests.web.alerts_world import NOW, notified, populate, settings, stocked_out
from web.alerts.models import JobRun
from web.scheduler import next_runs, run_locked

RAN = re.compile(r"ran (\w+) for (\S+):")


@pytest.fixture
def world(Session):
    with Session() as s:
        populate(s)
        stocked_out(s)
    return Session


def database_url(engine) -> str:
    """A URL another process can open on the test's database (its own schema on PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
    return make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def start_scheduler(engine, tmp_path, name: str, jobs: str, interval: float = 1.0) -> tuple[subprocess.Popen, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAWA_")}
    env.update(DAWA_ALERTS__INTERVAL_S=str(interval), DAWA_ALERTS__JOBS=jobs, DAWA_DEFAULT_TIMEZONE="UTC",
               DAWA_ALERTS__RETRY_BASE_DELAY_S="0.01", PYTHONUNBUFFERED="1")
    log = (tmp_path / f"{name}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "web.cli", "scheduler", "--db", database_url(engine)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def stop(proc: subprocess.Popen, log) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    return code


def wait_for(predicate, timeout: float = 120, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        for p in procs:
            assert p.poll() is None, "the scheduler process ended early"
        time.sleep(0.5)
    return False


def runs(Session, job: str | None = None, status: str | None = "ok") -> list[JobRun]:
    with Session() as s:
        stmt = select(JobRun).order_by(JobRun.scheduled_for)
        if job:
            stmt = stmt.where(JobRun.job == job)
        if status:
            stmt = stmt.where(JobRun.status == status)
        return list(s.scalars(stmt))


def test_the_lock_lets_one_run_through_per_job_and_scheduled_time(engine, world):
    s = settings()
    first = run_locked(engine, s, "stock", NOW, now=NOW)
    assert first.ran and first.status == "ok" and "1 new alert" in first.summary
    second = run_locked(engine, s, "stock", NOW, now=NOW)
    assert not second.ran and second.claimed_by == first_runner(world)
    later = run_locked(engine, s, "stock", NOW + timedelta(days=1), now=NOW + timedelta(days=1))
    assert later.ran
    assert [r.job for r in runs(world)] == ["stock", "stock"]
    with world() as session:
        assert notified(session)["mgr_h1"] == ["Stockout: MOR10 at H1"]


def first_runner(Session) -> str:
    return runs(Session)[0].runner


def test_concurrent_runs_of_one_scheduled_time_run_once(engine, world):
    s = settings()
    outcomes = []
    barrier = threading.Barrier(4)

    def go(_i):
        barrier.wait()
        outcomes.append(run_locked(engine, s, "verify", NOW, now=NOW))

    run_threads(go, 4, timeout=120)
    assert len(outcomes) == 4
    assert sum(o.ran for o in outcomes) == 1
    assert len(runs(world, "verify", status=None)) == 1


def test_a_failing_job_is_recorded_and_the_next_run_goes_on(engine, world):
    bad = settings()
    bad.default_timezone = "Not/AZone"  # stock alerts need the zone to know what day it is
    outcome = run_locked(engine, bad, "stock", NOW, now=NOW)
    assert outcome.ran and outcome.status == "failed" and "Not/AZone" in outcome.summary
    assert run_locked(engine, settings(), "stock", NOW + timedelta(hours=1), now=NOW).status == "ok"
    assert [r.status for r in runs(world, status=None)] == ["failed", "ok"]


@pytest.mark.slow
def test_scheduler_process_runs_jobs_on_its_interval(engine, world, tmp_path):
    proc, log = start_scheduler(engine, tmp_path, "one", '["stock", "verify"]')
    try:
        ok = wait_for(lambda: len(runs(world, "stock")) >= 2 and len(runs(world, "verify")) >= 2, procs=[proc])
    finally:
        code = stop(proc, log)
    output = (tmp_path / "one.log").read_text()
    assert ok, output[-3000:]
    assert code == 0, output[-3000:]
    assert "stopped" in output
    with world() as s:
        # The stockout was announced by the first stock run only.
        assert notified(s)["mgr_h1"] == ["Stockout: MOR10 at H1"]
    stock_runs = runs(world, "stock")
    assert all(r.runner.endswith(f":{proc.pid}") for r in stock_runs)
    assert "1 new alert" in stock_runs[0].summary and "0 new alert" in stock_runs[1].summary
    # The schedules were kept in the database's job store.
    assert set(next_runs(engine)) == {"stock", "verify"}


@pytest.mark.slow
def test_two_scheduler_processes_never_run_one_job_twice(engine, world, tmp_path):
    a, log_a = start_scheduler(engine, tmp_path, "a", '["verify"]')
    b, log_b = start_scheduler(engine, tmp_path, "b", '["verify"]')
    try:
        ok = wait_for(lambda: len(runs(world, "verify")) >= 8, procs=[a, b])
    finally:
        stop(a, log_a)
        stop(b, log_b)
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("a", "b")}
    assert ok, logs
    ran = [m.groups() for text_ in logs.values() for m in RAN.finditer(text_)]
    times = Counter(ran)
    assert ran and max(times.values()) == 1, [t for t, n in times.items() if n > 1]
    with world() as s:
        rows = s.execute(select(JobRun.scheduled_for, func.count()).group_by(JobRun.scheduled_for)).all()
    assert all(n == 1 for _, n in rows)
    assert len(rows) == len(ran)


@pytest.mark.slow
def test_a_restart_keeps_the_schedule_and_makes_up_missed_runs_once(engine, world, tmp_path):
    """Runs missed while the scheduler was down are coalesced into one run when it restarts."""
    from datetime import datetime, timezone

    first, log1 = start_scheduler(engine, tmp_path, "first", '["verify"]', interval=2)
    try:
        assert wait_for(lambda: len(runs(world, "verify")) >= 1, procs=[first]), \
            (tmp_path / "first.log").read_text()[-3000:]
    finally:
        stop(first, log1)
    stopped = max(r.scheduled_for for r in runs(world, "verify", status=None))
    time.sleep(9)  # four or five runs are missed
    second, log2 = start_scheduler(engine, tmp_path, "second", '["verify"]', interval=2)
    try:
        assert wait_for(lambda: any(r.runner.endswith(f":{second.pid}") for r in runs(world, "verify")),
                        procs=[second]), (tmp_path / "second.log").read_text()[-3000:]
    finally:
        stop(second, log2)
    output = (tmp_path / "second.log").read_text()
    # Logged before the scheduler computes any run time: a schedule made afresh at the restart
    # could only have run times after it, a kept one is already due before it.
    line = re.search(r"^(\S+ \S+) dawa.scheduler INFO scheduler \S+ started", output, re.M)
    assert line, output
    started = datetime.strptime(line.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone(timezone.utc)
    missed = [r for r in runs(world, "verify", status=None) if stopped < r.scheduled_for < started]
    # Kept in the store, the schedule was due in the past at the restart: one run stands for all
    # the missed ones (none would run had the schedule been lost, several without coalescing).
    assert len(missed) == 1, (stopped, started, [r.scheduled_for for r in runs(world, status=None)])
    assert missed[0].runner.endswith(f":{second.pid}")
