"""Small hand-built ledgers for detector tests: post movements, then build the scan's frames."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from anomaly import features
from anomaly.detectors import load
from stock.ledger import post
from stock.settings import Detection
from tests.stock.builders import build_world, entry

LY = timezone(timedelta(hours=2))


def at(day: int, hour: int = 10, minute: int = 0, month: int = 3) -> datetime:
    """A local (UTC+2) time in 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=LY)


def stocked(session, *, facility="H1", item="MOR10", lot="L1", quantity=1000):
    """The small world of tests.stock.builders, with stock on one shelf."""
    build_world(session)
    post(session, entry("receipt", quantity, facility=facility, item=item, lot=lot, at=at(1, 8),
                        entry_id=f"stock-{facility}-{item}-{lot}"))
    session.commit()


def run(session, name: str, settings: Detection | None = None):
    frames = features.build(session, settings or Detection())
    return load(name)(frames)


def post_all(session, *entries):
    post(session, list(entries))
    session.commit()
