"""The real ``dawa`` command line, run in-process against a SQLite file of the test's own."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from stock.db import make_engine, session_factory
from stock.ledger import post
from stock.queries import on_hand
from stock.settings import SECRET_NAMES, get_settings
from tests.stock.builders import T0, build_world, entry
from web.cli import common as cli
from web.cli.main import app


class Dawa:
    """Runs ``dawa`` commands on one database; output with rich's line wrapping undone."""

    def __init__(self, tmp_path):
        self.path = tmp_path / "dawa.sqlite"
        self.url = f"sqlite:///{self.path}"
        self.runner = CliRunner()

    def __call__(self, *args: str, db: bool = True):
        argv = [*args, "--db", self.url] if db else list(args)
        result = self.runner.invoke(app, argv, catch_exceptions=False)
        result.text = " ".join(result.output.split())
        result.err = " ".join(result.stderr.split())
        return result

    @contextmanager
    def session(self):
        engine = make_engine(self.url)
        try:
            with session_factory(engine)() as s:
                yield s
        finally:
            engine.dispose()

    def raw(self, sql: str, **params) -> None:
        """SQL behind the application's back, as anyone holding the file could run it."""
        engine = make_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(text(sql), params)
        finally:
            engine.dispose()


def table_rows(output: str) -> list[tuple[str, ...]]:
    """The body rows of a rich table, as tuples of cell texts."""
    return [tuple(cell.strip() for cell in line.strip().strip("│").split("│"))
            for line in output.splitlines() if line.lstrip().startswith("│")]


@pytest.fixture
def dawa(tmp_path, monkeypatch):
    """A working folder of the test's own, with no secrets or database URL from outside."""
    monkeypatch.chdir(tmp_path)
    for name in (*SECRET_NAMES, "DAWA_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    # Wide enough that tables and paths are not wrapped (xdist workers fix COLUMNS at 80).
    for console in (cli.console, cli.err):
        monkeypatch.setattr(console, "width", 240)
    yield Dawa(tmp_path)
    get_settings.cache_clear()


@pytest.fixture
def ready(dawa):
    """An initialised database with a few movements at three facilities."""
    assert dawa("init", "--env-file", ".env").exit_code == 0
    with dawa.session() as s:
        build_world(s)
        post(s, [
            entry("receipt", 100, facility="H1", lot="L1", entry_id="H1-R"),
            entry("dispense", 30, facility="H1", lot="L1", entry_id="H1-D"),
            entry("receipt", 40, facility="H1", lot="L2", entry_id="H1-R2"),
            entry("receipt", 500, facility="WH-C", item="GLOVE", lot="", expiry_date=None,
                  entry_id="W-R"),
            entry("receipt", "12.5", facility="HC2", item="INSG", lot="I1", entry_id="C-R"),
        ])
        s.commit()
    return dawa


def secrets_in(path) -> dict[str, str]:
    lines = [line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line]
    names = [name for name, _ in lines]
    assert len(names) == len(set(names)), f"a secret written twice: {names}"
    return dict(lines)


def test_init_creates_schema_and_writes_both_secrets_once(dawa, tmp_path):
    result = dawa("init", "--env-file", ".env")
    assert result.exit_code == 0, result.output
    assert "database ready" in result.text
    assert "generated DAWA_SECRET_KEY, DAWA_PATIENT_ID_KEY" in result.text
    first = secrets_in(tmp_path / ".env")
    assert set(first) == set(SECRET_NAMES)
    assert all(len(v) >= 32 for v in first.values()) and len(set(first.values())) == 2

    again = dawa("init", "--env-file", ".env")
    assert again.exit_code == 0, again.output
    assert "generated" not in again.text
    assert secrets_in(tmp_path / ".env") == first
    assert dawa("ledger", "verify").exit_code == 0


def test_init_keeps_secrets_in_an_env_file_elsewhere(dawa, tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    env_file = conf / "dawa.env"
    assert dawa("init", "--env-file", str(env_file)).exit_code == 0
    first = secrets_in(env_file)
    assert set(first) == set(SECRET_NAMES)
    assert dawa("init", "--env-file", str(env_file)).exit_code == 0
    assert secrets_in(env_file) == first


def test_init_writes_no_secret_already_in_the_environment(dawa, tmp_path, monkeypatch):
    monkeypatch.setenv("DAWA_SECRET_KEY", "from-the-environment-" + "x" * 20)
    result = dawa("init", "--env-file", ".env")
    assert result.exit_code == 0, result.output
    assert set(secrets_in(tmp_path / ".env")) == {"DAWA_PATIENT_ID_KEY"}


@pytest.mark.parametrize("command", [["stock"], ["ledger", "verify"], ["ledger", "head"], ["ledger", "check"]])
def test_uninitialised_database_refused_with_pointer_to_init(dawa, command):
    result = dawa(*command)
    assert result.exit_code != 0
    assert "not initialised" in result.err and "run `dawa init` first" in result.err


def test_ledger_verify_clean_then_tampered(ready):
    result = ready("ledger", "verify")
    assert result.exit_code == 0, result.output
    assert "ok: 5 entries in 3 facility chains verified" in result.text

    ready.raw("DROP TRIGGER ledger_entry_no_update")
    ready.raw("UPDATE ledger_entry SET quantity = 10000 WHERE entry_id = 'H1-D'")
    result = ready("ledger", "verify")
    assert result.exit_code == 1
    assert "BROKEN H1: entry H1-D at position 2" in result.err
    assert "1 broken chain(s) out of 3" in result.err


def test_ledger_verify_with_triggers_in_place_refuses_the_tampering(ready):
    with pytest.raises(DBAPIError, match="append-only"):
        ready.raw("DELETE FROM ledger_entry WHERE entry_id = 'H1-D'")
    assert ready("ledger", "verify").exit_code == 0


def test_ledger_head_then_verify_against(ready, tmp_path):
    heads = tmp_path / "heads.json"
    result = ready("ledger", "head", "--out", str(heads))
    assert result.exit_code == 0, result.output
    assert "written to" in result.text and "H1" in result.text
    exported = {h["facility_code"]: h["length"] for h in json.loads(heads.read_text())["heads"]}
    assert exported == {"H1": 3, "HC2": 1, "WH-C": 1}

    with ready.session() as s:
        post(s, entry("dispense", 5, facility="H1", lot="L2", at=T0 + timedelta(days=1)))
        s.commit()
    result = ready("ledger", "verify", "--against", str(heads))
    assert result.exit_code == 0, result.output
    assert "ok: 6 entries in 3 facility chains verified against" in result.text

    # Cut H1 back to two entries and wind its head back to match: only the export can tell.
    ready.raw("DROP TRIGGER ledger_entry_no_delete")
    ready.raw("DELETE FROM ledger_entry WHERE facility_id = (SELECT id FROM facility WHERE code = 'H1') "
              "AND chain_seq > 2")
    ready.raw("UPDATE chain_head SET length = 2, head_hash = (SELECT chain_hash FROM ledger_entry "
              "WHERE entry_id = 'H1-D') WHERE facility_id = (SELECT id FROM facility WHERE code = 'H1')")
    assert ready("ledger", "verify").exit_code == 0
    result = ready("ledger", "verify", "--against", str(heads))
    assert result.exit_code == 1
    assert "BROKEN H1: the chain at position 3" in result.err and "cut off" in result.err


def test_ledger_verify_against_garbage_file(ready, tmp_path):
    bad = tmp_path / "not-heads.json"
    bad.write_text("hello", encoding="utf-8")
    result = ready("ledger", "verify", "--against", str(bad))
    assert result.exit_code == 2
    assert "not-heads.json" in result.err and "not a chain heads file" in result.err


def test_ledger_check_reports_drift_and_repairs(ready):
    result = ready("ledger", "check")
    assert result.exit_code == 0, result.output
    assert "every balance equals the sum of its ledger entries" in result.text

    ready.raw("UPDATE balance SET on_hand = 75000 WHERE facility_id = (SELECT id FROM facility "
              "WHERE code = 'H1') AND lot_id = (SELECT id FROM lot WHERE lot_number = 'L1')")
    result = ready("ledger", "check")
    assert result.exit_code == 1
    assert "DRIFT H1 MOR10 lot L1: ledger says 70, balance says 75 (drift 5)" in result.err
    assert "1 balance(s) drifted" in result.err
    assert ready("ledger", "check").exit_code == 1  # checking alone changes nothing

    result = ready("ledger", "check", "--repair")
    assert result.exit_code == 1  # the drift was there: say so, even when repaired
    assert "repaired 1 balance(s) from the ledger" in result.text
    assert ready("ledger", "check").exit_code == 0
    with ready.session() as s:
        assert [str(r.on_hand) for r in on_hand(s, facility_code="H1")] == ["70", "40"]


def test_stock_for_a_facility(ready):
    result = ready("stock", "--facility", "H1")
    assert result.exit_code == 0, result.output
    assert table_rows(result.output) == [("H1", "MOR10", "Morphine 10 mg tablet", "110", "tablet")]

    by_lot = ready("stock", "--facility", "H1", "--by-lot")
    assert by_lot.exit_code == 0, by_lot.output
    assert table_rows(by_lot.output) == [
        ("H1", "MOR10", "Morphine 10 mg tablet", "L1", "2028-01-31", "70", "tablet"),
        ("H1", "MOR10", "Morphine 10 mg tablet", "L2", "2028-01-31", "40", "tablet"),
    ]
    assert table_rows(ready("stock", "--facility", "HC2").output) == [
        ("HC2", "INSG", "Insulin glargine 100 IU/ml", "12.5", "ml")]
    assert {row[0] for row in table_rows(ready("stock").output)} == {"H1", "HC2", "WH-C"}
    missing = ready("stock", "--facility", "NOPE")
    assert missing.exit_code == 1
    assert "unknown facility 'NOPE'" in missing.err
