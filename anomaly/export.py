"""Flags in the data contract's export format, most suspicious first, and filtered listings.

What leaves Dawa goes through ``contract_rows``: patients by pseudonym unless clear cards were
asked for by someone allowed to."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from anomaly.models import Flag, FlagEvidence, FlagHit
from stock import messages
from stock.models import Facility
from stock.pseudonyms import NoPatientKey, pseudonym, pseudonymise_flag

EXPORT_COLUMNS = ("flag_id", "detector", "score", "severity", "facility_code", "subject", "subject_id",
                  "entry_ids", "reason", "created_at")


@dataclass(frozen=True)
class FlagRow:
    flag_id: str
    detector: str
    score: float
    severity: str
    facility_code: str
    subject: str
    subject_id: str
    entry_ids: str
    reason: str
    created_at: str
    status: str
    rank_score: float
    region: str
    messages: list | None = None
    """The reason as stored messages (stock.messages), for rendering in the reader's language."""


def query(session: Session, *, region: str | None = None, facility: str | None = None,
          detector: str | None = None, severity: str | None = None, status: str | None = None,
          limit: int | None = None, offset: int = 0) -> list[FlagRow]:
    """Flags, most suspicious first (rank: score weighted by detector precision). ``status`` may
    name several statuses, comma-separated ("open,assigned": the cases still to work on)."""
    stmt = (select(Flag, Facility.code, Facility.region)
            .outerjoin(Facility, Facility.id == Flag.facility_id)
            .order_by(Flag.rank_score.desc(), Flag.score.desc(), Flag.flag_id))
    if region:
        stmt = stmt.where(Facility.region == region)
    if facility:
        stmt = stmt.where(Facility.code == facility)
    if severity:
        stmt = stmt.where(Flag.severity == severity)
    if status:
        stmt = stmt.where(Flag.status.in_(status.split(",")))
    if detector:
        stmt = stmt.where(Flag.flag_id.in_(select(FlagHit.flag_id).where(FlagHit.detector == detector)))
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    rows = session.execute(stmt).all()
    ids = [f.flag_id for f, _c, _r in rows]
    evidence: dict[str, list[str]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for fid, eid in session.execute(select(FlagEvidence.flag_id, FlagEvidence.entry_id)
                                        .where(FlagEvidence.flag_id.in_(chunk))
                                        .order_by(FlagEvidence.flag_id, FlagEvidence.entry_id)):
            evidence[fid].append(eid)
    return [FlagRow(f.flag_id, f.detectors, round(f.score, 4), f.severity, code or "", f.subject,
                    f.subject_id, ";".join(evidence[f.flag_id]), f.reason, _iso(f.created_at), f.status,
                    round(f.rank_score, 4), region or "", f.messages)
            for f, code, region in rows]


def contract_rows(session: Session, *, key: str | None, clear_cards: bool = False, **filters) -> list[FlagRow]:
    """The flags as the contract export writes them (``query``'s filters), patients named by their
    pseudonym under ``key`` in subject and reason; ``clear_cards`` keeps the cards, for a caller who
    was let take them out (and recorded doing so)."""
    rows = query(session, **filters)
    if clear_cards:  # reasons were written with pseudonyms (anomaly.scan): the card again
        return [dataclasses.replace(r, reason=r.reason.replace(pseudonym(r.subject_id, key), r.subject_id),
                                    messages=_cards_back(r.messages, pseudonym(r.subject_id, key), r.subject_id))
                if key and r.subject == "patient" else r for r in rows]
    if not key:
        raise NoPatientKey("flags name patients by pseudonym: DAWA_PATIENT_ID_KEY is needed")
    return [pseudonymise_flag(r, key) for r in rows]


def _cards_back(stored: list | None, alias: str, card: str) -> list | None:
    if not stored:
        return stored
    return messages.dump(messages.map_codes(messages.load(stored), lambda text: text.replace(alias, card)))


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def to_csv(rows: list[FlagRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        writer.writerow([getattr(r, c) for c in EXPORT_COLUMNS])
    return buf.getvalue()


def to_json(rows: list[FlagRow]) -> str:
    return json.dumps([{c: asdict(r)[c] for c in EXPORT_COLUMNS} for r in rows], ensure_ascii=False, indent=2) + "\n"
