"""The demo on any date: new sample data end yesterday, and the CLI's stock summary and the web
pages reckon stock "as of" the same day, so positions show months of real use."""

from __future__ import annotations

import csv
import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from sample_data.generator import generate
from stock.db import make_engine, session_factory
from stock.settings import SECRET_NAMES, get_settings
from tests.web.conftest import PASSWORD, Served, login, make_settings
from web.cli import common as cli
from web.cli import demo
from web.cli.main import app


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in (*SECRET_NAMES, "DAWA_DATABASE_URL", "DAWA_DEFAULT_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    for console in (cli.console, cli.err):
        monkeypatch.setattr(console, "width", 240)
    yield tmp_path
    get_settings.cache_clear()


def _ledger(folder):
    with (folder / "ledger.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_a_period_ending_on_a_day_ends_on_that_day(tmp_path):
    generate(tmp_path, seed=4, scale=0.02, months=2, end=date(2026, 3, 30))
    rows = _ledger(tmp_path)
    occurred = [datetime.fromisoformat(r["occurred_at"]) for r in rows]
    assert max(occurred).date() == date(2026, 3, 30)
    assert min(occurred).date() >= date(2026, 1, 31)
    last_second = datetime.fromisoformat("2026-03-30T23:59:59+02:00")
    recorded = [datetime.fromisoformat(r["recorded_at"]) for r in rows if r.get("recorded_at")]
    assert recorded and max(recorded) <= last_second


def test_sample_data_end_is_checked(folder):
    bad = CliRunner().invoke(app, ["sample-data", "x", "--end", "30/06/2026"])
    assert bad.exit_code == 2 and "--end" in bad.output and not (folder / "x").exists()


def test_new_sample_data_end_yesterday_and_the_summary_and_pages_agree(folder, capsys):
    runner = CliRunner()
    result = runner.invoke(app, ["sample-data", "data", "--scale", "0.03", "--months", "4"])
    assert result.exit_code == 0, result.output
    today = get_settings().today()
    occurred = [datetime.fromisoformat(r["occurred_at"]) for r in _ledger(folder / "data")]
    assert max(occurred).date() == today - timedelta(days=1)
    assert f"up to {today - timedelta(days=1)}" in result.output

    url = f"sqlite:///{folder / 'dawa.sqlite'}"
    assert runner.invoke(app, ["init", "--db", url]).exit_code == 0
    imported = runner.invoke(app, ["import", "data", "--db", url, "--quiet"])
    assert imported.exit_code == 0, imported.output
    engine = make_engine(url)
    try:
        capsys.readouterr()
        demo._summary(engine, get_settings())
        out = capsys.readouterr().out
        assert f"Stock summary as of {today}" in out
        table = out.split("Lowest months of stock", 1)[1].split("Stocked out", 1)[0]
        rows = [[c.strip() for c in line.strip().strip("│").split("│")]
                for line in table.splitlines() if line.lstrip().startswith("│")]
        assert len(rows) == 12
        assert all(Decimal(amc) > 0 for _, _, _, amc, _ in rows), rows

        from web.app import create_app
        from web.admin.service import create_user

        settings = make_settings()
        with session_factory(engine)() as s:
            create_user(s, "boss", "admin", PASSWORD, web=settings.web)
            s.commit()
        served = Served(create_app(engine, settings))
        try:
            import httpx

            with httpx.Client(base_url=served.base_url, timeout=60) as c:
                assert login(c, "boss").status_code == 303
                page = c.get("/overview").text
        finally:
            served.stop()
        facility_names = dict(re.findall(r"<bdi>([^<]+)</bdi> <bdi class=\"code\">([^<]+)</bdi>", page))
        codes = {code: name for name, code in facility_names.items()}
        for fac, item, _, amc, _ in rows:
            row = re.search(rf"<td><bdi>{re.escape(codes[fac])}</bdi></td>\s*<td><bdi>{re.escape(item)}</bdi></td>"
                            r"\s*<td class=\"num\">[^<]*</td>\s*<td class=\"num\">([^<]+)</td>", page)
            assert row, (fac, item)
            assert Decimal(row.group(1).replace(",", "")) == Decimal(amc).quantize(Decimal("0.1")), (fac, item)
    finally:
        engine.dispose()


def test_the_demo_says_when_its_data_are_older_than_yesterday(folder):
    last = get_settings().today() - timedelta(days=40)
    generate(folder / "demo" / "data", seed=1, scale=0.02, months=3, end=last)
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--scale", "0.02"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"the demo data end on {last}: remove demo and run the demo again for data up to yesterday" in text
    assert f"Stock summary as of {get_settings().today()}" in text
