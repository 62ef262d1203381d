"""Alerts' tables: who wants what and how, what is currently alerting, what was sent, in-app
notifications, and which scheduled job runs were claimed.

They share ``stock.models.Base`` so one metadata and one migration history hold the whole schema.
Users have no e-mail column: an address belongs to the preference that uses it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    JSON,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stock.models import LANGUAGES, Base, BigIntPK, UTCDateTime, _in

CHANNELS = ("email", "webhook", "in_app")
MODES = ("immediate", "digest")
DIGEST_BY_DEFAULT = ("auditor",)
"""Roles whose e-mail and webhook preferences are a digest unless they choose otherwise: an auditor
works the flag queue, and a message per scan run would be noise."""
SEVERITIES = ("low", "medium", "high")
STATES = ("active", "resolved")
DELIVERY_STATUSES = ("pending", "sent", "failed", "held", "digested")
RUN_STATUSES = ("running", "ok", "failed")

SCHEDULER_JOBS_TABLE = "apscheduler_jobs"


class AlertPreference(Base):
    """How one user wants to hear about alerts through one channel. A user may have several (an
    e-mail for stock trouble, a webhook into the ministry's ticketing system...). A user with
    none gets in-app notifications, immediately, from medium severity."""

    __tablename__ = "alert_preference"
    __table_args__ = (
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("language", LANGUAGES), name="language"),
        CheckConstraint(_in("mode", MODES), name="mode"),
        CheckConstraint(_in("min_severity", SEVERITIES), name="min_severity"),
        CheckConstraint("channel = 'in_app' OR address IS NOT NULL", name="address"),
        UniqueConstraint("user_id", "channel", "address"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10), doc="email, webhook or in_app")
    address: Mapped[str | None] = mapped_column(String(500), doc="e-mail address or webhook URL")
    language: Mapped[str | None] = mapped_column(String(8), doc="en, fr or ar; empty = the user's own")
    mode: Mapped[str] = mapped_column(String(10), default="immediate", doc="immediate or digest")
    min_severity: Mapped[str] = mapped_column(String(8), default="medium")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertState(Base):
    """The current state of one alerting condition, e.g. ``stockout:H1:MOR10``. An alert is sent
    when a condition becomes active, and again only after it has resolved and returned."""

    __tablename__ = "alert_state"
    __table_args__ = (CheckConstraint(_in("state", STATES), name="state"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), doc="stockout, low_stock, expiring_30, flag, ...")
    state: Mapped[str] = mapped_column(String(10), doc="active or resolved")
    since: Mapped[datetime] = mapped_column(UTCDateTime, doc="when it entered this state")
    last_checked: Mapped[datetime] = mapped_column(UTCDateTime)
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"), index=True)
    detail: Mapped[str | None] = mapped_column(Text, doc="the latest message about it")


class AlertDelivery(Base):
    """The alert history: one row per recipient and channel of each alert, with its outcome.
    A row is written ``pending`` before anything is sent, so a run that dies mid-way leaves work
    the next run finishes; ``held`` rows wait for the recipient's digest, which marks them
    ``digested``."""

    __tablename__ = "alert_delivery"
    __table_args__ = (
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        CheckConstraint(_in("severity", SEVERITIES), name="severity"),
        Index("ix_alert_delivery_user_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    preference_id: Mapped[int | None] = mapped_column(ForeignKey("alert_preference.id"))
    alert_key: Mapped[str] = mapped_column(String(200), index=True, doc="the condition, or digest:<date>")
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    messages: Mapped[dict | None] = mapped_column(JSON, doc="title and body as messages (web.alerts.messages)")
    link: Mapped[str | None] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10), doc="pending, sent, failed, held or digested")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, doc="the last attempt's error")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Notification(Base):
    """An in-app notification, shown to its user until acknowledged."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_ack", "user_id", "acknowledged_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    messages: Mapped[dict | None] = mapped_column(JSON, doc="title and body as messages, rendered in the "
                                                  "reader's language when read (web.alerts.messages)")
    link: Mapped[str | None] = mapped_column(String(300))
    alert_key: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobRun(Base):
    """One run of a scheduled job. The unique (job, scheduled_for) is the lock: of two scheduler
    processes firing the same job for the same time, only the one whose insert succeeds runs it."""

    __tablename__ = "job_run"
    __table_args__ = (
        UniqueConstraint("job", "scheduled_for"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10))
    runner: Mapped[str] = mapped_column(String(200), doc="host and process id that ran it")
    summary: Mapped[str | None] = mapped_column(Text)


scheduler_jobs = Table(
    SCHEDULER_JOBS_TABLE,
    Base.metadata,
    # The table APScheduler's SQLAlchemyJobStore keeps its schedules in, declared exactly as it
    # declares it, so that migrations create it and it never shows as a difference.
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
