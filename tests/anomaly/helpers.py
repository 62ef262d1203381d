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
    hits = load(name)(frames)
    for hit in hits:
        assert_reads_in_every_language(hit.reason)
    return hits


def assert_reads_in_every_language(reason) -> None:
    """A detector's reason is kept as messages, and each of them has its French and Arabic
    translation (gettext never hands back the English msgid)."""
    from stock.messages import as_messages
    from web.messages import render

    found = as_messages(reason)
    assert found, f"reason worded as plain text, not messages: {reason!r}"
    for lang in ("fr", "ar"):
        missing: set = set()
        render(found, lang, missing=missing)
        assert not missing, f"untranslated in {lang}: {sorted(missing)}"


def post_all(session, *entries):
    post(session, list(entries))
    session.commit()
