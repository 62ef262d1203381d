"""Replenishment's tables: stock levels, requisitions, their lines, the lots shipped against them,
their timeline, and the pack sizes items are counted in when ordered and received.

Quantities are in the item's base unit (stock.quantities.Quantity); months of stock are kept in
the same exact type (thousandths of a month).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from stock.models import FACILITY_KINDS, Base, UTCDateTime, _in
from stock.quantities import Quantity

STATES = ("draft", "submitted", "approved", "rejected", "shipped", "received")
"""draft → submitted → approved → shipped → received; submitted → rejected ends it."""


class StockLevelRule(Base):
    """Maximum and minimum months of stock and the emergency order point, for a facility kind
    (``facility_id`` and ``item_id`` empty) or for one facility and item (an override)."""

    __tablename__ = "stock_level_rule"
    __table_args__ = (
        CheckConstraint("(facility_kind IS NULL) <> (facility_id IS NULL)", name="kind_or_facility"),
        CheckConstraint("(facility_id IS NULL) = (item_id IS NULL)", name="override_names_item"),
        CheckConstraint("emergency_months >= 0 AND emergency_months <= min_months AND min_months <= max_months "
                        "AND max_months > 0", name="ordered_levels"),
        CheckConstraint(_in("facility_kind", FACILITY_KINDS) + " OR facility_kind IS NULL", name="facility_kind"),
        UniqueConstraint("facility_kind"),
        UniqueConstraint("facility_id", "item_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    facility_kind: Mapped[str | None] = mapped_column(String(20), doc="the kind these levels apply to")
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("item.id"))
    max_months: Mapped[Decimal] = mapped_column(Quantity)
    min_months: Mapped[Decimal] = mapped_column(Quantity)
    emergency_months: Mapped[Decimal] = mapped_column(Quantity, doc="emergency order point, in months")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


class Requisition(Base):
    """A facility's request to its supplying store for one period (or between periods, emergency)."""

    __tablename__ = "requisition"
    __table_args__ = (
        CheckConstraint(_in("status", STATES), name="status"),
        # One regular requisition per facility and period; emergencies may be many.
        Index("uq_requisition_regular_period", "facility_id", "period", unique=True,
              sqlite_where=text("emergency = 0"), postgresql_where=text("NOT emergency")),
        Index("ix_requisition_supplier_id", "supplier_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True, doc="REQ-<facility>-<period>[-E<n>]")
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), doc="the requesting facility")
    supplier_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), doc="the supplying store")
    period: Mapped[str] = mapped_column(String(7), doc="YYYY-MM the figures cover")
    emergency: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(12))
    waybill: Mapped[str | None] = mapped_column(String(40), unique=True, doc="set when shipped")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))


class RequisitionLine(Base):
    """One item of a requisition: the period's figures computed from the ledger, the suggested and
    requested quantities, and what the supplier approved."""

    __tablename__ = "requisition_line"
    __table_args__ = (UniqueConstraint("requisition_id", "item_id"),
                      CheckConstraint("requested >= 0 AND (approved IS NULL OR approved >= 0)", name="not_negative"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requisition_id: Mapped[int] = mapped_column(ForeignKey("requisition.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    opening: Mapped[Decimal] = mapped_column(Quantity)
    received: Mapped[Decimal] = mapped_column(Quantity)
    dispensed: Mapped[Decimal] = mapped_column(Quantity)
    issued: Mapped[Decimal] = mapped_column(Quantity, doc="transferred out to other facilities")
    losses: Mapped[Decimal] = mapped_column(Quantity)
    adjustments: Mapped[Decimal] = mapped_column(Quantity, doc="signed: adjustments and counts")
    closing: Mapped[Decimal] = mapped_column(Quantity)
    stockout_days: Mapped[int] = mapped_column(Integer)
    amc: Mapped[Decimal] = mapped_column(Quantity, doc="average monthly consumption, stockout days adjusted")
    max_stock: Mapped[Decimal] = mapped_column(Quantity)
    suggested: Mapped[Decimal] = mapped_column(Quantity)
    requested: Mapped[Decimal] = mapped_column(Quantity)
    request_reason: Mapped[str | None] = mapped_column(Text, doc="why requested differs from suggested")
    approved: Mapped[Decimal | None] = mapped_column(Quantity)
    approval_reason: Mapped[str | None] = mapped_column(Text, doc="why approved differs from requested")


class RequisitionShipment(Base):
    """One lot shipped against a line (a transfer_out entry), and what arrived of it."""

    __tablename__ = "requisition_shipment"
    __table_args__ = (CheckConstraint("quantity > 0 AND (received IS NULL OR received >= 0) "
                                      "AND (damaged IS NULL OR damaged >= 0)", name="not_negative"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("requisition_line.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    out_entry_id: Mapped[str] = mapped_column(ForeignKey("ledger_entry.entry_id"), doc="the transfer_out")
    received: Mapped[Decimal | None] = mapped_column(Quantity, doc="counted on arrival, damaged included")
    damaged: Mapped[Decimal | None] = mapped_column(Quantity)
    note: Mapped[str | None] = mapped_column(Text)


class RequisitionEvent(Base):
    """The timeline: each change of state (and each change of a quantity) with who made it."""

    __tablename__ = "requisition_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requisition_id: Mapped[int] = mapped_column(ForeignKey("requisition.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(20), doc="prepared, changed, submitted, approved, ...")
    status: Mapped[str] = mapped_column(String(12), doc="the state after the action")
    note: Mapped[str | None] = mapped_column(Text)


class PackSize(Base):
    """A pack an item comes in: how many base units it holds, and the GTIN printed on it."""

    __tablename__ = "pack_size"
    __table_args__ = (UniqueConstraint("item_id", "units"), CheckConstraint("units > 0", name="units"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    units: Mapped[Decimal] = mapped_column(Quantity, doc="base units in one pack")
    name: Mapped[str] = mapped_column(String(60), doc="e.g. box of 144")
    gtin: Mapped[str | None] = mapped_column(String(14), unique=True)
