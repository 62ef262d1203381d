"""`dawa` tables at 80 columns: no line wider than the terminal, no id cut across lines; the flag
list puts each reason under its flag, beside it on a wide terminal. The flag list runs as a real
process with COLUMNS set, the way a terminal sets it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from anomaly.models import Flag
from stock.db import make_engine, session_factory
from stock.ledger import post
from stock.masterdata import add_user
from stock.settings import SECRET_NAMES, get_settings
from tests.stock.builders import build_world, entry
from web.cli import common as cli
from web.cli.main import app

LY = timezone(timedelta(hours=2))


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A database with a few flags (morphine without prescription), users and alert history."""
    monkeypatch.chdir(tmp_path)
    for name in (*SECRET_NAMES, "DAWA_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    url = f"sqlite:///{tmp_path / 'dawa.sqlite'}"
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", url]).exit_code == 0
    engine = make_engine(url)
    with session_factory(engine)() as s:
        build_world(s)
        add_user(s, "pharmacist.tripoli.central", "pharmacist", facility_code="H1",
                 display_name="Fatima Abdelrahman Al-Mabrouk, senior pharmacist, night shift")
        add_user(s, "auditor.national", "auditor")
        post(s, [entry("receipt", 1000, facility="H1", item="MOR10", lot="L1",
                       at=datetime(2026, 3, 1, 8, tzinfo=LY), entry_id="stock")]
             + [entry("dispense", 10 + i, facility="H1", item="MOR10", lot="L1",
                      at=datetime(2026, 3, 3 + i, 23, 10, tzinfo=LY), entry_id=f"no-rx-{i}") for i in range(5)])
        s.commit()
    engine.dispose()
    assert runner.invoke(app, ["scan", "--db", url, "--quiet"]).exit_code == 0
    assert runner.invoke(app, ["jobs", "run", "scan", "--db", url]).exit_code == 0
    yield url
    get_settings.cache_clear()


def _flag_ids(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return list(s.scalars(select(Flag.flag_id)))
    finally:
        engine.dispose()


def _dawa(url: str, columns: int, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAWA_")}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env.update(COLUMNS=str(columns), TERM="dumb",
               PYTHONPATH=os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", "from web.cli.main import app; app()", *args, "--db", url],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _fits(out: str, columns: int) -> list[str]:
    lines = out.splitlines()
    too_wide = [line for line in lines if len(line) > columns]
    assert not too_wide, too_wide
    return lines


def test_flags_list_at_80_columns_has_whole_short_ids_and_reasons_below(db):
    ids = _flag_ids(db)
    assert len(ids) >= 5
    lines = _fits(_dawa(db, 80, "flags", "list"), 80)
    shown = [m.group(1) for line in lines if (m := re.match(r"(F[0-9a-f]{9,})\s+\d\.\d\d\s", line))]
    assert len(shown) == len(ids)
    assert all(len(s) < 25 for s in shown)
    assert sorted(next(i for i in ids if i.startswith(s)) for s in shown) == sorted(ids)
    # Each reason is on the lines under its flag, indented, words whole.
    first = lines.index(next(line for line in lines if line.startswith(shown[0])))
    assert lines[first + 1].startswith("  ") and "Morphine" in " ".join(lines[first + 1:first + 4])
    # Twenty flags of one line and a short reason take a screen, not hundreds of lines.
    assert len(lines) <= 6 * len(ids) + 4


def test_flags_list_on_a_wide_terminal_keeps_the_reason_beside_the_flag(db):
    lines = _fits(_dawa(db, 200, "flags", "list"), 200)
    rows = [line for line in lines if re.search(r"F[0-9a-f]{9,}", line)]
    assert rows and all("Morphine" in row or "Controlled" in row or "dispensed" in row for row in rows)


def test_a_verdict_takes_the_short_id_the_list_shows(db):
    ids = _flag_ids(db)
    short = ids[0][:10]
    result = CliRunner().invoke(app, ["flags", "verdict", short, "confirmed", "--by", "auditor.national",
                                      "--comment", "seen on the register", "--db", db])
    assert result.exit_code == 0, result.output
    engine = make_engine(db)
    with session_factory(engine)() as s:
        assert s.get(Flag, ids[0]).status == "confirmed"
    engine.dispose()
    ambiguous = CliRunner().invoke(app, ["flags", "verdict", "F" * 10, "confirmed", "--by", "x", "--db", db])
    assert ambiguous.exit_code != 0


@pytest.mark.parametrize("args, whole", [
    (("stock", "--by-lot"), ["MOR10", "H1"]),
    (("users", "list"), ["pharmacist.tripoli.central", "auditor.national"]),
    (("alerts", "list"), ["auditor.national"]),
    (("jobs", "list"), ["verify", "digest"]),
    (("flags", "precision"), []),
    (("ledger", "head"), ["WH-C", "H1", "HC2"]),
])
def test_every_table_fits_80_columns_without_cutting_an_id(db, monkeypatch, args, whole):
    monkeypatch.setattr(cli.console, "width", 80)
    result = CliRunner().invoke(app, [*args, "--db", db], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = _fits(result.output, 80)
    for word in whole:
        assert any(re.search(rf"(^|[^\w.]){re.escape(word)}($|[^\w.])", line) for line in lines), (word, result.output)
    if args == ("ledger", "head"):
        assert len([line for line in lines if re.search(r"\b[0-9a-f]{64}\b", line)]) == 3  # WH-C, H1, HC2
