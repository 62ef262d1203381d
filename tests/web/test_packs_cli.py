"""`dawa packs`: declaring and listing an item's pack sizes from the command line."""

from __future__ import annotations

from typer.testing import CliRunner

from stock.db import session_factory
from tests.stock.builders import build_world
from web.cli.main import app


def test_packs_add_and_list(sqlite_engine):
    with session_factory(sqlite_engine)() as s:
        build_world(s)
    url = str(sqlite_engine.url)
    runner = CliRunner()
    r = runner.invoke(app, ["packs", "add", "MOR10", "144", "box of 144", "--gtin", "09501101530003", "--db", url])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["packs", "add", "MOR10", "144", "again", "--db", url])
    assert r.exit_code == 1 and "already has a pack of 144" in r.output
    r = runner.invoke(app, ["packs", "add", "MOR10", "many", "x", "--db", url])
    assert r.exit_code == 1 and "units" in r.output
    r = runner.invoke(app, ["packs", "list", "MOR10", "--db", url])
    assert r.exit_code == 0 and "box of 144\t144 tablet\t09501101530003" in r.output
