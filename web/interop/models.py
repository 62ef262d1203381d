"""The interoperability tables: where an imported movement came from, and what DHIS2 answered.

``import_provenance`` keeps, beside a ledger entry another system sent, what that system said and
Dawa did not take as its own: the source system's user (the ledger's ``recorded_by`` is always the
authenticated caller who imported it) and how the lot was chosen when the source named none
(``fefo``: the lot that expires first of those on hand). It is not part of the hash chain: the
entry is, and this row only explains it.

``dhis2_push`` records each send of dataValueSets to a DHIS2 server and its import summary, so the
conflicts DHIS2 reported stay visible after the command or job has ended.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stock.models import Base, BigIntPK, UTCDateTime


class ImportProvenance(Base):
    __tablename__ = "import_provenance"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(64), unique=True, doc="the ledger entry it explains")
    source_system: Mapped[str | None] = mapped_column(String(200), doc="identifier system of the source's user")
    source_user: Mapped[str | None] = mapped_column(String(200), doc="who the source system says did it")
    lot_choice: Mapped[str | None] = mapped_column(String(16), doc="fefo: no lot was sent; Dawa chose it")
    imported_by: Mapped[str] = mapped_column(String(64), doc="the authenticated user who imported it")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Dhis2Push(Base):
    __tablename__ = "dhis2_push"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    period: Mapped[str] = mapped_column(String(7), doc="YYYY-MM")
    server: Mapped[str] = mapped_column(String(500), doc="the server's base URL, without credentials")
    pushed_by: Mapped[str] = mapped_column(String(64), doc="a user, or 'scheduler'")
    sent: Mapped[int] = mapped_column(Integer, doc="data values sent")
    status: Mapped[str] = mapped_column(String(16), doc="DHIS2's status (SUCCESS, WARNING, ERROR) or FAILED")
    imported: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    ignored: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    conflicts: Mapped[str | None] = mapped_column(Text, doc="JSON list of DHIS2's conflicts")
    message: Mapped[str | None] = mapped_column(Text, doc="why the send failed, when it did")
