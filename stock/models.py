"""The ledger's tables, as typed SQLAlchemy 2.0 models.

Every constraint is named (the naming convention on ``Base.metadata``) so that migrations can find
and change it on SQLite and PostgreSQL alike. Times are stored in UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from stock.quantities import Quantity

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

FACILITY_KINDS = ("hospital", "health_center", "pharmacy", "warehouse")
ENTRY_KINDS = ("receipt", "dispense", "transfer_out", "transfer_in", "adjustment", "loss", "count")
ROLES = ("pharmacist", "facility_manager", "auditor", "admin")
LANGUAGES = ("en", "fr", "ar")
SEXES = ("F", "M", "U")

# SQLite makes only an INTEGER PRIMARY KEY an alias of its fast rowid.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database returns.

    SQLite keeps no offset, so values are normalised to UTC before they are written and marked UTC
    when read; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: times must carry a zone")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """The same rule as ``_in``, written as comparisons joined by OR, for tables that bulk imports
    fill: SQLite evaluates an IN list in a CHECK by building a lookup table again for every row
    inserted, which was a third of the time it took to insert a million ledger rows."""
    return " OR ".join(f"{column} = {v!r}" for v in values)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Facility(Base):
    __tablename__ = "facility"
    __table_args__ = (CheckConstraint(_in("kind", FACILITY_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(20), doc="hospital, health_center, pharmacy or warehouse")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    timezone: Mapped[str | None] = mapped_column(
        String(64), doc="IANA zone for showing times; settings.default_timezone when empty"
    )


class Item(Base):
    __tablename__ = "item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    atc_code: Mapped[str | None] = mapped_column(String(16), doc="WHO ATC code; empty for supplies")
    form: Mapped[str | None] = mapped_column(String(50))
    unit: Mapped[str] = mapped_column(String(20), doc="base unit all quantities are counted in")
    controlled: Mapped[bool] = mapped_column(
        Boolean, doc="narcotic, psychotropic or high-value: watched more closely"
    )
    max_dispense_quantity: Mapped[Decimal | None] = mapped_column(
        Quantity, doc="protocol ceiling for one dispensing; checked by detection, not enforced"
    )
    gtin: Mapped[str | None] = mapped_column(
        String(14), index=True, unique=True,
        doc="GS1 GTIN (8, 12, 13 or 14 digits, check digit verified) on the item's packs; a scan names "
            "the item by it. One per item: a second pack size with its own GTIN is another item")


class Lot(Base):
    """A manufacturer's lot of an item. ``lot_number`` '' is the item's untracked lot."""

    __tablename__ = "lot"
    __table_args__ = (UniqueConstraint("item_id", "lot_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    lot_number: Mapped[str] = mapped_column(String(64))
    expiry_date: Mapped[date | None] = mapped_column(Date)


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (CheckConstraint(_one_of("sex", SEXES), name="sex"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    health_card_id: Mapped[str] = mapped_column(String(64), unique=True)
    birth_year: Mapped[int | None] = mapped_column(Integer)
    sex: Mapped[str | None] = mapped_column(String(1))
    home_facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    deceased_on: Mapped[date | None] = mapped_column(Date)
    registered: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        doc="false for a health card first seen on a dispensing, not in the patient register",
    )


class Prescription(Base):
    __tablename__ = "prescription"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True, doc="the contract's prescription_id")
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    prescriber: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    days_supply: Mapped[int] = mapped_column(Integer)
    issued_on: Mapped[date] = mapped_column(Date)
    diagnosis_code: Mapped[str | None] = mapped_column(String(16))


class User(Base):
    __tablename__ = "app_user"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),
                      CheckConstraint(_in("language", LANGUAGES), name="language"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    facility_id: Mapped[int | None] = mapped_column(
        ForeignKey("facility.id"), doc="scope: one facility"
    )
    region: Mapped[str | None] = mapped_column(String(100), doc="scope: a region; both empty = national")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    language: Mapped[str | None] = mapped_column(
        String(8), doc="en, fr or ar, chosen by the user; empty = from the browser's preference")


class LedgerEntry(Base):
    """One stock movement. Rows are only ever inserted: corrections are new, reversing entries.

    ``quantity`` is what the contract's row says (positive; signed for an adjustment; the counted
    quantity for a count); ``effect`` is the signed change to stock on hand it caused.
    """

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ENTRY_KINDS), name="kind"),
        # Uniqueness is held by named unique indexes rather than table constraints: a large import
        # into SQLite drops and rebuilds them (see stock.bulk), which a table's UNIQUE constraint
        # does not allow. They refuse a duplicate all the same.
        Index("uq_ledger_entry_entry_id", "entry_id", unique=True),
        Index("uq_ledger_entry_facility_id_chain_seq", "facility_id", "chain_seq", unique=True),
        Index("uq_ledger_entry_reverses", "reverses", unique=True,
              sqlite_where=text("reverses IS NOT NULL"), postgresql_where=text("reverses IS NOT NULL")),
        Index("ix_ledger_entry_facility_item_occurred", "facility_id", "item_id", "occurred_at"),
        # An incremental FHIR pull asks for what was recorded since the last sync.
        Index("ix_ledger_entry_recorded_at", "recorded_at"),
        # Lookups by a column most entries leave empty index only the entries that have one: every
        # query on them asks for a value, and a large import builds them in a fraction of the time.
        *(Index(f"ix_ledger_entry_{c}", c, sqlite_where=text(f"{c} IS NOT NULL"),
                postgresql_where=text(f"{c} IS NOT NULL"))
          for c in ("patient_id", "prescription_ref", "document_number")),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(64), doc="client's idempotency key")
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    chain_seq: Mapped[int] = mapped_column(BigInteger, doc="1-based position in the facility's chain")
    chain_hash: Mapped[str] = mapped_column(String(64), doc="SHA-256 over previous hash and this entry")
    kind: Mapped[str] = mapped_column(String(16))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    effect: Mapped[Decimal] = mapped_column(Quantity)
    book_quantity: Mapped[Decimal | None] = mapped_column(
        Quantity, doc="count only: stock on hand by the books just before the count"
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))
    prescription_ref: Mapped[str | None] = mapped_column(
        String(64), doc="prescription_id as written; may name no stored prescription"
    )
    counterparty: Mapped[str | None] = mapped_column(
        String(200), doc="the other facility's code on a transfer; a supplier on a receipt"
    )
    counterparty_facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    document_number: Mapped[str | None] = mapped_column(String(64))
    reverses: Mapped[str | None] = mapped_column(
        ForeignKey("ledger_entry.entry_id"), doc="entry_id this entry corrects"
    )
    serial_number: Mapped[str | None] = mapped_column(
        String(20), doc="the pack's GS1 serial (AI 21), as scanned; the same pack dispensed twice is a flag"
    )


class Balance(Base):
    """Stock on hand per facility, item and lot: a cache of the ledger kept in the same transaction."""

    __tablename__ = "balance"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        Index("ix_balance_facility_item", "facility_id", "item_id"),
    )

    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    on_hand: Mapped[Decimal] = mapped_column(Quantity)


class ChainHead(Base):
    """The end of each facility's hash chain. Locking this row serialises a facility's writers."""

    __tablename__ = "chain_head"

    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), primary_key=True)
    length: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))


class StockReport(Base):
    """A facility's monthly stock report (opening, received, consumed, adjustment, closing,
    stockout days, ordered) stored exactly as the facility reported it.

    Figures that do not add up are kept as they are: that is the evidence report detection reads.
    A facility that resubmits a period with other figures adds a new revision; earlier revisions
    stay, and the highest revision of a facility, item and period is the current report.
    """

    __tablename__ = "stock_report"
    __table_args__ = (
        UniqueConstraint("facility_id", "item_id", "period", "revision"),
        CheckConstraint("stockout_days >= 0 AND stockout_days <= 31", name="stockout_days"),
        CheckConstraint("opening >= 0 AND received >= 0 AND consumed >= 0 AND closing >= 0 "
                        "AND (ordered IS NULL OR ordered >= 0)", name="not_negative"),
        CheckConstraint("revision >= 1", name="revision"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    period: Mapped[str] = mapped_column(String(7), doc="the month reported on, YYYY-MM")
    revision: Mapped[int] = mapped_column(Integer, doc="1 for the first submission, +1 per changed resubmission")
    opening: Mapped[Decimal] = mapped_column(Quantity, doc="stock on hand at the start of the month")
    received: Mapped[Decimal] = mapped_column(Quantity)
    consumed: Mapped[Decimal] = mapped_column(Quantity, doc="dispensed or used during the month")
    adjustment: Mapped[Decimal | None] = mapped_column(Quantity, doc="signed losses and adjustments; empty = none")
    closing: Mapped[Decimal] = mapped_column(Quantity, doc="stock on hand at the end of the month")
    stockout_days: Mapped[int | None] = mapped_column(Integer)
    ordered: Mapped[Decimal | None] = mapped_column(Quantity, doc="quantity requested for resupply")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
