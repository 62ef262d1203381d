"""`dawa scan`: run every detector over the ledger and keep the flags.

A scan reads the ledger into frames once, runs each detector, merges and persists the flags. It
is deterministic (fixed random_state, sorted outputs) and idempotent (flag ids come from evidence
or a detector's case). It is incremental: when nothing was added since the last scan it does no
work at all, and otherwise it reads only from ``scan_lookback_days`` before the earliest new
movement (flags about older history are left as they are). ``force`` reads everything.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anomaly import cases, detectors, features
from anomaly import reports as report_detection
from anomaly.flags import persist
from anomaly.hits import Hit
from anomaly.models import Flag, Scan
from stock.models import LedgerEntry
from stock.pseudonyms import pseudonymise_text
from stock.settings import Detection, get_settings


@dataclass
class ScanReport:
    scan_id: int | None
    skipped: bool
    since: datetime | None = None
    entries: int = 0
    hits: int = 0
    new: int = 0
    updated: int = 0
    suppressed: int = 0
    flags_total: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def pseudonymous(hits: list[Hit], entries, key: str) -> list[Hit]:
    """``hits`` with every health card their reasons and details name (the subject's, their evidence
    entries', a card a detail names) written as its pseudonym. Subject ids stay: the flag keeps its
    id, and the case page finds the patient."""
    needed = {e for h in hits for e in h.entry_ids}
    card_of: dict[str, str] = {}
    if len(entries) and needed:
        with_card = entries[entries["entry_id"].isin(needed) & (entries["health_card_id"] != "")]
        card_of = dict(zip(with_card["entry_id"], with_card["health_card_id"]))
    out = []
    for h in hits:
        cards = {card_of[e] for e in h.entry_ids if e in card_of}
        if h.subject == "patient":
            cards.add(h.subject_id)
        named = {v for k, v in (h.details or {}).items()
                 if isinstance(v, str) and ("patient" in k or "card" in k)} if isinstance(h.details, dict) else set()
        cards |= named
        if not cards:
            out.append(h)
            continue
        details = h.details
        if isinstance(details, dict):
            details = {k: (pseudonymise_text(v, cards, key) if isinstance(v, str) else v) for k, v in details.items()}
        out.append(dataclasses.replace(h, reason=pseudonymise_text(h.reason, cards, key), details=details))
    return out


def last_scan(session: Session) -> Scan | None:
    return session.scalars(select(Scan).where(Scan.finished_at.is_not(None)).order_by(Scan.id.desc())).first()


def run(session: Session, *, now: datetime | None = None, settings: Detection | None = None,
        only: list[str] | None = None, force: bool = False,
        progress: Callable[[str, int, int], None] | None = None, patient_key: str | None = None) -> ScanReport:
    """Scan in the caller's transaction. ``only`` restricts to some detectors (for tests and
    for re-running one detector after changing its thresholds); ``force`` scans even when the
    ledger has not changed. With ``patient_key`` (the install's, stock.pseudonyms.patient_key: what
    `dawa scan` and the scheduled scan pass) the flags' reasons and details name patients by
    pseudonym; the flag's subject keeps the card, for the audited case page. Without it reasons are
    kept as the detectors wrote them (tests of the detectors' wording, evaluation on generated data)."""
    now = now or datetime.now(timezone.utc)
    settings = settings or get_settings().detection
    progress = progress or (lambda phase, done, total: None)
    through = session.scalar(select(func.max(LedgerEntry.id))) or 0
    previous = last_scan(session)
    if (previous is not None and previous.through_seq >= through and not force and only is None
            and not report_detection.changed_since(session, previous.started_at)):
        return ScanReport(previous.id, skipped=True, flags_total=previous.flags_total)

    since = None
    if previous is not None and not force and only is None:
        earliest_new = session.scalar(select(func.min(LedgerEntry.occurred_at))
                                      .where(LedgerEntry.id > previous.through_seq))
        # Only monthly reports are new: read no ledger rows (a moment after the latest).
        since = (earliest_new - timedelta(days=settings.scan_lookback_days) if earliest_new is not None
                 else (session.scalar(select(func.max(LedgerEntry.occurred_at))) or now) + timedelta(seconds=1))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    progress("reading ledger", 0, 1)
    frames = features.build(session, settings, since=since)
    timings["features"] = time.perf_counter() - t
    names = [n for n in detectors.available() if only is None or n in only]
    hits: list[Hit] = []
    for i, name in enumerate(names):
        progress("detecting", i, len(names))
        t = time.perf_counter()
        found = detectors.load(name)(frames) if len(frames.entries) else []
        timings[name] = time.perf_counter() - t
        hits.extend(found)
    progress("detecting", len(names), len(names))
    t = time.perf_counter()
    hits = cases.assemble(hits, frames) if len(frames.entries) else []
    timings["cases"] = time.perf_counter() - t
    t = time.perf_counter()
    hits.extend(report_detection.scan_hits(session, settings, only))  # monthly stock reports, when any
    timings["reports"] = time.perf_counter() - t
    hits.sort(key=lambda h: (h.key, h.detector))
    if patient_key is not None:
        hits = pseudonymous(hits, frames.entries, patient_key)

    scan = Scan(started_at=now, through_seq=through, entries_read=len(frames.entries))
    session.add(scan)
    session.flush()
    t = time.perf_counter()
    progress("saving flags", 0, 1)
    result = persist(session, hits, scan, settings, now)
    timings["persist"] = time.perf_counter() - t
    scan.flags_new, scan.flags_updated = result.new, result.updated
    scan.flags_total = session.scalar(select(func.count()).select_from(Flag))
    scan.finished_at = datetime.now(timezone.utc)
    session.flush()
    return ScanReport(scan.id, False, since, len(frames.entries), len(hits), result.new, result.updated,
                      result.suppressed, scan.flags_total, timings)
