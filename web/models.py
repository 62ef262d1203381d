"""The web app's tables: logins, API tokens, login attempts and the audit trail.

Tokens are stored only as SHA-256 hashes, so a copy of the database opens no one's session.
They share ``stock.models.Base`` so that one metadata (and one set of migrations) holds the schema.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stock.models import Base, BigIntPK, UTCDateTime


class WebSession(Base):
    """One login in a browser. The cookie holds the token; this row holds its hash."""

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="SHA-256 of the cookie's token")
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64), doc="required on every form this login posts")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, doc="the login ends then, used or not")
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, doc="last request, to end idle logins")


class ApiToken(Base):
    """A personal token for an integration, acting with its owner's role and scope."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="SHA-256 of the token")
    name: Mapped[str] = mapped_column(String(100), doc="what the owner uses it for")
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, doc="refused from then on")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, doc="refused from then on, revoked or not")


class LoginAttempt(Base):
    """Every password checked at the login form, to throttle guessing by user name and address."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_username_at", "username", "at"),
        Index("ix_login_attempt_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), doc="as typed, lower-cased")
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    succeeded: Mapped[bool] = mapped_column(Boolean)


class AuditRecord(Base):
    """Who did what, when and from where: every change, and every read of a patient's history."""

    __tablename__ = "audit_record"
    __table_args__ = (
        Index("ix_audit_record_object", "object_type", "object_id"),
        Index("ix_audit_record_facility_at", "facility_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("app_user.id"), index=True, doc="empty when no one was logged in (a failed login)")
    action: Mapped[str] = mapped_column(String(64), doc="e.g. login, login_failed, user_created")
    object_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(200))
    facility_id: Mapped[int | None] = mapped_column(
        ForeignKey("facility.id"), doc="the facility it concerns, so scoped auditors see their own")
    detail: Mapped[str | None] = mapped_column(Text, doc="JSON object with what else matters")
    ip: Mapped[str | None] = mapped_column(String(64))


class AuditSeal(Base):
    """One sealing of the audit trail (web.audit_chain): the hash chain over every record up to
    ``through_id``. Append-only, like the records it seals."""

    __tablename__ = "audit_seal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    through_id: Mapped[int] = mapped_column(BigInteger, unique=True, doc="the last record sealed")
    records: Mapped[int] = mapped_column(BigInteger, doc="records sealed in all, up to through_id")
    head_hash: Mapped[str] = mapped_column(String(64), doc="the chain's hash after through_id")


class MasterDataChange(Base):
    """A change to master data the detectors depend on, written by a database trigger whoever
    made it (the app, the CLI, a hand edit). Append-only."""

    __tablename__ = "master_data_change"
    __table_args__ = (Index("ix_master_data_change_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(128), doc="the database role (or the app user it set)")
    object_type: Mapped[str] = mapped_column(String(32), doc="item, patient or prescription")
    object_id: Mapped[str] = mapped_column(String(200), doc="item or prescription code; a patient's id")
    field: Mapped[str] = mapped_column(String(64))
    old: Mapped[str | None] = mapped_column(Text, doc="the value as stored (quantities in thousandths)")
    new: Mapped[str | None] = mapped_column(Text)
