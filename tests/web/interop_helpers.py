"""Shared set-up for the interoperability tests: the small sample data set and a second database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import migrations
from sample_data import SMALL
from stock.db import session_factory
from stock.importer import import_dataset
from tests.conftest import PgSchema, _pg_or_skip, make_sqlite



def import_small(session) -> None:
    import_dataset(session, SMALL)
    session.commit()


def import_master_data(session, tmp_path: Path) -> None:
    """The small set's facilities, items, patients and prescriptions, without its ledger."""
    folder = tmp_path / "master"
    folder.mkdir()
    for name in ("facilities.csv", "items.csv", "patients.csv", "prescriptions.csv"):
        shutil.copy(SMALL / name, folder / name)
    import_dataset(session, folder)
    session.commit()


@pytest.fixture
def other_engine(engine, tmp_path):
    """A second fresh database on the same backend as ``engine``."""
    if engine.dialect.name == "sqlite":
        (tmp_path / "other").mkdir()
        eng = make_sqlite(tmp_path / "other")
        yield eng
        eng.dispose()
    else:
        schema = PgSchema(_pg_or_skip())
        migrations.upgrade(schema.engine)
        yield schema.engine
        schema.drop()


@pytest.fixture
def OtherSession(other_engine):  # noqa: N802 - a session factory
    return session_factory(other_engine)


def allow_health_cards(live_server, *roles: str) -> None:
    """Let ``roles`` ask a FHIR export for health cards (``DAWA_FHIR__HEALTH_CARD_ROLES``): what
    a test re-imports must name patients by card, as another clinical system sends them."""
    settings = live_server.app.state.settings
    live_server.app.state.settings = settings.model_copy(
        update={"fhir": settings.fhir.model_copy(update={"health_card_roles": list(roles or ["pharmacist"])})})
