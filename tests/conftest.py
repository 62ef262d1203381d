"""Fixtures: a fresh database per test, built by the same migrations users run.

SQLite lives in the test's temporary folder. PostgreSQL tests (marked ``postgres``) get a schema of
their own on the server named by DAWA_TEST_POSTGRES_URL; under CI=true an unreachable server fails
the run instead of skipping it.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text

import migrations
from stock.db import make_engine, session_factory

PG_URL = os.environ.get("DAWA_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_or_skip() -> str:
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but DAWA_TEST_POSTGRES_URL is not set")
        pytest.skip("DAWA_TEST_POSTGRES_URL not set")
    try:
        probe = make_engine(PG_URL)
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        probe.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    return PG_URL


def make_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'dawa.sqlite'}")
    migrations.upgrade(engine)
    return engine


class PgSchema:
    """A throwaway schema on the test server, with an engine whose search_path points at it."""

    def __init__(self, url: str):
        self.name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin = make_engine(url)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        self.engine = make_engine(url, connect_args={"options": f"-csearch_path={self.name}"})

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = make_sqlite(tmp_path)
        yield eng
        eng.dispose()
    else:
        schema = PgSchema(_pg_or_skip())
        migrations.upgrade(schema.engine)
        yield schema.engine
        schema.drop()


@pytest.fixture
def sqlite_engine(tmp_path):
    eng = make_sqlite(tmp_path)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine():
    schema = PgSchema(_pg_or_skip())
    migrations.upgrade(schema.engine)
    yield schema.engine
    schema.drop()


@pytest.fixture
def Session(engine):  # noqa: N802 - a session factory, named like one
    return session_factory(engine)


@pytest.fixture
def session(Session):
    with Session() as s:
        yield s
