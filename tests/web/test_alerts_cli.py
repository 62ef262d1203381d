"""`dawa jobs list|run` and `dawa alerts prefer|list`, run in-process on the test's database."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.web.alerts_world import populate, stocked_out, user
from tests.web.test_alerts_scheduler import database_url
from web.alerts.models import AlertPreference, JobRun
from web.cli.main import app


@pytest.fixture
def dawa(engine, Session):
    with Session() as s:
        populate(s)
        stocked_out(s)
    url = database_url(engine)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, [*args, "--db", url], catch_exceptions=False)
        result.text = " ".join(result.output.split())
        return result

    return run


def test_jobs_run_then_list_and_history(dawa, Session):
    r = dawa("jobs", "run", "stock")
    assert r.exit_code == 0, r.output
    assert "stock: 1 new alert(s)" in r.text and "3 in-app" in r.text
    again = dawa("jobs", "run", "stock")
    assert again.exit_code == 0 and "stock: 0 new alert(s)" in again.text
    with Session() as s:
        assert [row.status for row in s.scalars(select(JobRun).where(JobRun.job == "stock"))] == ["ok", "ok"]
    listing = dawa("jobs", "list")
    assert listing.exit_code == 0
    for name in ("scan", "stock", "verify", "digest"):
        assert name in listing.text
    assert "0 6 * * *" in listing.text and "ok" in listing.text
    history = dawa("alerts", "list")
    assert history.exit_code == 0 and "Alert history (3 of 3)" in history.text
    for word in ("Stockout", "MOR10 at H1", "mgr_h1", "mgr_tripoli", "in_app", "sent"):
        assert word in history.text


def test_unknown_job_is_refused(dawa):
    r = dawa("jobs", "run", "nightly")
    assert r.exit_code == 2 and "no job 'nightly'; jobs are scan, stock, verify, digest, dhis2" in " ".join(r.stderr.split())


def test_alerts_prefer_sets_updates_and_removes(dawa, Session):
    r = dawa("alerts", "prefer", "mgr_h1", "email", "--address", "m@example.org", "--language", "fr",
             "--mode", "digest", "--min-severity", "high")
    assert r.exit_code == 0, r.output
    r = dawa("alerts", "prefer", "mgr_h1", "email", "--address", "m@example.org", "--min-severity", "low")
    assert r.exit_code == 0
    with Session() as s:
        [pref] = s.scalars(select(AlertPreference).where(AlertPreference.user_id == user(s, "mgr_h1").id))
        assert (pref.channel, pref.address, pref.mode, pref.min_severity, pref.language) == \
            ("email", "m@example.org", "immediate", "low", None)
    assert dawa("alerts", "prefer", "mgr_h1", "email", "--address", "m@example.org", "--remove").exit_code == 0
    with Session() as s:
        assert s.scalars(select(AlertPreference)).all() == []


@pytest.mark.parametrize("args, message", [
    (("mgr_h1", "email"), "a email channel needs --address"),
    (("mgr_h1", "email", "--address", "not-an-address"), "--address must be an e-mail address"),
    (("mgr_h1", "webhook", "--address", "ftp://x"), "--address must be an http:// or https:// URL"),
    (("mgr_h1", "sms", "--address", "1"), "channel must be one of email, webhook, in_app"),
    (("mgr_h1", "in_app", "--language", "de"), "--language must be one of en, fr, ar"),
])
def test_alerts_prefer_refuses_bad_input(dawa, args, message):
    r = dawa("alerts", "prefer", *args)
    assert r.exit_code == 2 and message in " ".join(r.stderr.split())


def test_alerts_prefer_unknown_user(dawa):
    r = dawa("alerts", "prefer", "nobody", "in_app")
    assert r.exit_code == 1 and "no user 'nobody'" in " ".join(r.stderr.split())
