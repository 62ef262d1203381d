"""The audit trail's hash chain: sealed after the fact, verified end to end.

Audit records are written on every request that changes or reads something personal, inside the
request's own transaction, so chaining each one as it is written would make every request wait on
one lock. They are sealed instead: ``seal`` (run by the scheduled verify job, and by `dawa audit
seal`) extends a SHA-256 chain over every record older than SEAL_LAG in id order and appends an
``audit_seal`` row with the head. Records cannot change afterwards (the table is append-only for
everyone, and the application's database role may not even try), and ``verify`` recomputes the
chain from the first record: a record changed, removed or slipped in under a sealed id breaks it.
The heads are witnessed outside the database (web.witness), so rewriting records *and* seals is
caught as well.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from web.models import AuditRecord, AuditSeal

GENESIS = "0" * 64
SEAL_LAG = timedelta(minutes=5)
"""Records younger than this are left for the next seal: a transaction still open may yet commit a
record with a lower id."""
BATCH = 5000


def record_hash(previous: str, r: AuditRecord) -> str:
    body = json.dumps([r.id, r.at.astimezone(timezone.utc).isoformat(), r.user_id, r.action, r.object_type,
                       r.object_id, r.facility_id, r.detail, r.ip], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((previous + body).encode("utf-8")).hexdigest()


def _records(session: Session, after: int, through: int | None):
    last = after
    while True:
        stmt = select(AuditRecord).where(AuditRecord.id > last).order_by(AuditRecord.id).limit(BATCH)
        if through is not None:
            stmt = stmt.where(AuditRecord.id <= through)
        rows = session.scalars(stmt).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()


def head(session: Session) -> AuditSeal | None:
    return session.scalars(select(AuditSeal).order_by(AuditSeal.through_id.desc()).limit(1)).first()


def seal(session: Session, now: datetime | None = None) -> AuditSeal | None:
    """Seal the records written since the last seal (older than SEAL_LAG); the new seal, or None
    when there was nothing to seal. The caller commits."""
    now = now or datetime.now(timezone.utc)
    last = head(session)
    after, h, count = (last.through_id, last.head_hash, last.records) if last else (0, GENESIS, 0)
    through = session.scalar(select(func.max(AuditRecord.id)).where(AuditRecord.id > after,
                                                                     AuditRecord.at < now - SEAL_LAG))
    if through is None:
        return None
    for r in _records(session, after, through):
        h = record_hash(h, r)
        count += 1
    row = AuditSeal(sealed_at=now, through_id=through, records=count, head_hash=h)
    session.add(row)
    session.flush()
    return row


@dataclass
class SealReport:
    seals: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, against: tuple[int, str] | None = None) -> SealReport:
    """Recompute the chain over every sealed record and compare it with each seal (and with
    ``against``, a (through_id, hash) witnessed outside the database)."""
    report = SealReport()
    seals = list(session.scalars(select(AuditSeal).order_by(AuditSeal.through_id)))
    checkpoints = {s.through_id: s for s in seals}
    if against is not None and against[0] not in checkpoints:
        report.problems.append(f"the witnessed audit seal through record {against[0]} is not in the database")
    h, n = GENESIS, 0
    through = seals[-1].through_id if seals else 0
    for r in _records(session, 0, through):
        h = record_hash(h, r)
        n += 1
        s = checkpoints.get(r.id)
        if s is not None:
            report.seals += 1
            if s.head_hash != h or s.records != n:
                report.problems.append(f"audit records up to {r.id} were changed, removed or inserted after "
                                       f"they were sealed on {s.sealed_at:%Y-%m-%d %H:%M}")
                return report
        if against is not None and r.id == against[0] and against[1] != h:
            report.problems.append(f"audit records up to {r.id} differ from the witnessed seal")
            return report
    report.records = n
    if report.seals < len(seals):
        report.problems.append(f"{len(seals) - report.seals} sealed audit record(s) are missing")
    return report


__all__ = ["seal", "verify", "head", "record_hash", "SealReport", "GENESIS", "SEAL_LAG"]
