"""Detection's tables: scans, flags with their evidence and detector hits, and auditors' verdicts.

They share the ledger's declarative Base (one metadata, one migration history) but only point at
it: detection reads the ledger and never writes to it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stock.models import BigIntPK, Base, UTCDateTime, _in

SUBJECTS = ("entry", "patient", "user", "facility_item", "transfer", "facility")
SEVERITIES = ("low", "medium", "high")
STATUSES = ("open", "assigned", "confirmed", "dismissed", "escalated")
VERDICTS = ("confirmed", "dismissed", "escalated")


class Scan(Base):
    """One run of the detectors. ``through_seq`` is the last ledger row it saw, so the next scan
    knows what is new."""

    __tablename__ = "scan"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    through_seq: Mapped[int] = mapped_column(BigInteger, doc="highest ledger_entry.id read")
    entries_read: Mapped[int] = mapped_column(BigInteger, default=0)
    flags_new: Mapped[int] = mapped_column(Integer, default=0)
    flags_updated: Mapped[int] = mapped_column(Integer, default=0)
    flags_total: Mapped[int] = mapped_column(Integer, default=0)


class Flag(Base):
    """A suspicion an auditor reviews. Its id is derived from its evidence, so re-scanning finds
    the same flag again instead of raising a duplicate; several detectors pointing at the same
    evidence merge into one flag with every reason."""

    __tablename__ = "flag"
    __table_args__ = (
        CheckConstraint(_in("subject", SUBJECTS), name="subject"),
        CheckConstraint(_in("severity", SEVERITIES), name="severity"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint("score >= 0 AND score <= 1", name="score_range"),
        Index("ix_flag_rank", "status", "rank_score"),
    )

    flag_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"), index=True)
    subject: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float, doc="how surprising the case is in this ledger, 0..1 (anomaly.cases)")
    rank_score: Mapped[float] = mapped_column(Float, doc="the order auditors see: score re-ranked by verdicts (anomaly.rerank)")
    severity: Mapped[str] = mapped_column(String(8))
    detectors: Mapped[str] = mapped_column(String(400), doc="detectors that raised it, comma-separated")
    reason: Mapped[str] = mapped_column(Text, doc="every detector's reason, strongest first")
    messages: Mapped[list | None] = mapped_column(JSON, doc="the reason as messages (stock.messages), "
                                                  "rendered in the reader's language; None before they were kept")
    status: Mapped[str] = mapped_column(String(12), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_scan_id: Mapped[int] = mapped_column(ForeignKey("scan.id"))
    last_scan_id: Mapped[int] = mapped_column(ForeignKey("scan.id"))
    assignee: Mapped[str | None] = mapped_column(String(64), doc="auditor working the case (anomaly.workflow)")


class FlagEvidence(Base):
    """The ledger entries a flag rests on."""

    __tablename__ = "flag_evidence"

    flag_id: Mapped[str] = mapped_column(ForeignKey("flag.flag_id"), primary_key=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("ledger_entry.entry_id"), primary_key=True, index=True)


class FlagHit(Base):
    """One detector's finding behind a flag, with the numbers that made it fire."""

    __tablename__ = "flag_hit"

    flag_id: Mapped[str] = mapped_column(ForeignKey("flag.flag_id"), primary_key=True)
    detector: Mapped[str] = mapped_column(String(40), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    messages: Mapped[list | None] = mapped_column(JSON, doc="the reason as messages (stock.messages)")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scan.id"))


class Verdict(Base):
    """An auditor's decision on a flag. Verdicts are appended, never edited: the latest counts."""

    __tablename__ = "verdict"
    __table_args__ = (CheckConstraint(_in("verdict", VERDICTS), name="verdict"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    flag_id: Mapped[str] = mapped_column(ForeignKey("flag.flag_id"), index=True)
    verdict: Mapped[str] = mapped_column(String(12))
    comment: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)


FLAG_ACTIONS = ("assign", "confirm", "dismiss", "escalate", "comment", "reopen")


class FlagEvent(Base):
    """One step in a flag's review: who did what, moving it from which state to which. Appended by
    anomaly.workflow, never edited; together the rows are the case's timeline."""

    __tablename__ = "flag_event"
    __table_args__ = (
        CheckConstraint(_in("action", FLAG_ACTIONS), name="action"),
        CheckConstraint(_in("from_state", STATUSES), name="from_state"),
        CheckConstraint(_in("to_state", STATUSES), name="to_state"),
        Index("ix_flag_event_flag_at", "flag_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    flag_id: Mapped[str] = mapped_column(ForeignKey("flag.flag_id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(64), doc="user name of who acted (\"scan\" for a reopening)")
    action: Mapped[str] = mapped_column(String(12))
    from_state: Mapped[str] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    comment: Mapped[str | None] = mapped_column(Text)
    assignee: Mapped[str | None] = mapped_column(String(64), doc="for assign: the auditor given the case")
