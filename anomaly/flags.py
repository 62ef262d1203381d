"""Turning detector hits into flags an auditor reviews, and keeping them across scans.

Hits with the same subject and evidence merge into one flag (strongest score, every reason).
Flag ids come from the evidence, so a re-scan updates flags instead of duplicating them, and a
flag an auditor dismissed stays dismissed for the same evidence. Verdicts re-rank the open flags:
through a model trained on them (anomaly.rerank) once there are enough, before that through each
detector's measured precision.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anomaly import cases
from anomaly import rerank as rerank_model
from anomaly.hits import Hit
from anomaly.models import VERDICTS, Flag, FlagEvidence, FlagHit, Scan, Verdict
from stock import messages as reason_messages
from stock.errors import DawaError, InvalidEntry
from stock.models import Facility
from stock.settings import Detection

# A detector with no verdicts yet is trusted like one with 7 confirmed of 10: a prior that
# measured precision soon outweighs.
PRIOR_CONFIRMED, PRIOR_TOTAL = 7.0, 10.0


class UnknownFlag(DawaError):
    field = "flag_id"


def severity(score: float, settings: Detection) -> str:
    if score >= settings.high_score:
        return "high"
    if score >= settings.medium_score:
        return "medium"
    return "low"


@dataclass
class MergedFlag:
    flag_id: str
    subject: str
    subject_id: str
    facility_code: str | None
    entry_ids: tuple[str, ...]
    hits: list[Hit]

    @property
    def surprise(self) -> float | None:
        """Combined surprise of the case's detectors (anomaly.cases), or None for findings that
        carry none (monthly reports, hand-made hits)."""
        found = [h.details.get("surprise") for h in self.hits if isinstance(h.details, dict)]
        if not found or any(x is None for x in found):
            return None
        return cases.combine(found)

    @property
    def score(self) -> float:
        surprise = self.surprise
        return cases.to_score(surprise) if surprise is not None else max(h.score for h in self.hits)

    @property
    def strength(self) -> float:
        """The strongest detector's own score: how serious the finding is on its face, whatever
        the ledger around it (the severity shown to auditors)."""
        return max(float(h.details.get("strength", h.score)) if isinstance(h.details, dict) else h.score
                   for h in self.hits)

    @property
    def reason(self) -> str:
        return " ".join(h.reason for h in sorted(self.hits, key=lambda h: (-h.score, h.detector)))

    @property
    def messages(self) -> list | None:
        """The reason as stored messages, strongest first; None when a hit was worded as plain text."""
        ordered = sorted(self.hits, key=lambda h: (-h.score, h.detector))
        found = [reason_messages.as_messages(h.reason) for h in ordered]
        return None if any(not f for f in found) else reason_messages.dump(m for f in found for m in f)

    @property
    def detectors(self) -> str:
        return ",".join(sorted({h.detector for h in self.hits}))


def merge(hits: list[Hit]) -> list[MergedFlag]:
    by_key: dict[str, list[Hit]] = defaultdict(list)
    for h in hits:
        by_key[h.key].append(h)
    out = []
    for key, group in by_key.items():
        best: dict[str, Hit] = {}
        for h in group:  # one hit per detector: its strongest
            if h.detector not in best or h.score > best[h.detector].score:
                best[h.detector] = h
        first = group[0]
        evidence = sorted({e for h in group for e in h.entry_ids})
        out.append(MergedFlag(key, first.subject, first.subject_id, first.facility_code,
                              tuple(evidence), list(best.values())))
    return out


def detector_precision(session: Session) -> dict[str, tuple[float, int, int]]:
    """Per detector: (smoothed precision, confirmed, dismissed), from the latest verdict of each
    flag it contributed to. Escalated counts as confirmed: someone found it worth pursuing."""
    latest = (select(Verdict.flag_id, func.max(Verdict.id).label("vid")).group_by(Verdict.flag_id)).subquery()
    rows = session.execute(
        select(FlagHit.detector, Verdict.verdict, func.count())
        .join(latest, latest.c.flag_id == FlagHit.flag_id)
        .join(Verdict, Verdict.id == latest.c.vid)
        .group_by(FlagHit.detector, Verdict.verdict)
    ).all()
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for detector, verdict, n in rows:
        counts[detector][0 if verdict in ("confirmed", "escalated") else 1] += n
    return {d: ((c + PRIOR_CONFIRMED) / (c + x + PRIOR_TOTAL), c, x) for d, (c, x) in counts.items()}


def _weight(detectors: str, precision: dict) -> float:
    prior = PRIOR_CONFIRMED / PRIOR_TOTAL
    return max(precision.get(d, (prior,))[0] for d in detectors.split(","))


@dataclass
class PersistResult:
    new: int = 0
    updated: int = 0
    suppressed: int = 0


def persist(session: Session, hits: list[Hit], scan: Scan, settings: Detection, now: datetime) -> PersistResult:
    """Write merged flags, their evidence and hits, in the caller's transaction."""
    result = PersistResult()
    merged = merge(hits)
    precision = detector_precision(session)
    facilities = dict(session.execute(select(Facility.code, Facility.id)).all())
    existing = {f.flag_id: f for f in session.scalars(select(Flag))} if merged else {}
    stored_evidence: dict[str, set[str]] = defaultdict(set)
    if existing:
        for fid, eid in session.execute(select(FlagEvidence.flag_id, FlagEvidence.entry_id)):
            stored_evidence[fid].add(eid)
    for m in merged:
        flag = existing.get(m.flag_id)
        added = set(m.entry_ids) - stored_evidence.get(m.flag_id, set())
        if flag is not None and flag.status == "dismissed":
            if not added:
                result.suppressed += 1
                continue
            # New evidence is new information: the case goes back to the auditors.
            flag.status = "open"
        weight = _weight(m.detectors, precision)
        if flag is None:
            flag = Flag(flag_id=m.flag_id, facility_id=facilities.get(m.facility_code), subject=m.subject,
                        subject_id=m.subject_id, status="open", created_at=now, first_scan_id=scan.id)
            session.add(flag)
            session.add_all(FlagEvidence(flag_id=m.flag_id, entry_id=e) for e in m.entry_ids)
            result.new += 1
        else:
            changed = (round(flag.score, 6) != round(m.score, 6) or flag.reason != m.reason
                       or flag.detectors != m.detectors or bool(added))
            result.updated += int(changed)
            session.query(FlagHit).filter(FlagHit.flag_id == m.flag_id).delete()
            session.add_all(FlagEvidence(flag_id=m.flag_id, entry_id=e) for e in sorted(added))
        flag.score = round(m.score, 6)
        flag.rank_score = round(m.score * weight, 6)
        flag.severity = severity(m.strength, settings)
        flag.detectors = m.detectors
        flag.reason = m.reason
        flag.messages = m.messages
        flag.updated_at = now
        flag.last_scan_id = scan.id
        session.add_all(FlagHit(flag_id=m.flag_id, detector=h.detector, score=round(h.score, 6),
                                reason=str(h.reason), messages=reason_messages.dump(reason_messages.as_messages(h.reason)),
                                details=h.details, scan_id=scan.id) for h in m.hits)
    session.flush()
    if merged:
        rerank(session)
    return result


def rerank(session: Session) -> None:
    """Recompute every flag's rank after verdicts change: from the re-ranker trained on them
    (anomaly.rerank) once there are enough of both kinds, else from detector precision."""
    session.flush()
    learned = rerank_model.learned_ranks(session)
    precision = detector_precision(session) if learned is None else {}
    for flag in session.scalars(select(Flag)):
        flag.rank_score = (learned[flag.flag_id] if learned is not None
                           else round(flag.score * _weight(flag.detectors, precision), 6))
    session.flush()


def record_verdict(session: Session, flag_id: str, verdict: str, *, by: str, comment: str | None,
                   now: datetime) -> Verdict:
    """An auditor's verdict; the flag takes its status, and ranking learns from it."""
    if verdict not in VERDICTS:
        raise InvalidEntry(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}", field="verdict")
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise UnknownFlag(f"no flag {flag_id!r}")
    if not by:
        raise InvalidEntry("a verdict needs the auditor who gave it", field="decided_by")
    v = Verdict(flag_id=flag_id, verdict=verdict, comment=comment or None, decided_by=by, decided_at=now)
    session.add(v)
    flag.status = verdict
    flag.updated_at = now
    session.flush()
    rerank(session)
    return v
