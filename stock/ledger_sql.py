"""The write path's tables and statements, built once at import. The write path speaks Core on the
session's connection: the ORM's unit of work, identity map and per-object events cost more than
the SQL itself for one small entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import and_, bindparam, func, insert, select, update

from stock.models import Balance, ChainHead, Facility, Item, LedgerEntry, Lot, Patient, Prescription
from stock.quantities import Quantity


# Tables of the hot path.
_ENTRY = LedgerEntry.__table__
_BALANCE = Balance.__table__
_HEAD = ChainHead.__table__
_FACILITY = Facility.__table__
_ITEM = Item.__table__
_LOT = Lot.__table__
_PATIENT = Patient.__table__


@dataclass(frozen=True)
class _LotRow:
    id: int
    lot_number: str
    expiry_date: date | None


@dataclass(frozen=True)
class _ItemRow:
    id: int
    code: str
    unit: str
    max_dispense_quantity: Decimal | None


@dataclass(frozen=True)
class _PatientRow:
    id: int
    health_card_id: str
    registered: bool
    deceased_on: date | None


# The facility and its chain head, locked: every writer of a facility queues here, which keeps the
# chain linear and makes the balance read-modify-write below safe (SQLite: BEGIN IMMEDIATE already
# holds the database's write lock; FOR UPDATE is left out there).
_HEAD_STMT = (
    select(_FACILITY.c.id, _FACILITY.c.code, _HEAD.c.length, _HEAD.c.head_hash)
    .select_from(_FACILITY.join(_HEAD, _HEAD.c.facility_id == _FACILITY.c.id))
    .where(_FACILITY.c.code == bindparam("code"))
    .with_for_update(of=_HEAD)
)


_FACILITY_STMT = select(_FACILITY.c.id, _FACILITY.c.code).where(_FACILITY.c.code == bindparam("code"))
_LOCK_HEADS_STMT = (
    select(_HEAD.c.facility_id)
    .select_from(_FACILITY.join(_HEAD, _HEAD.c.facility_id == _FACILITY.c.id))
    .where(_FACILITY.c.code.in_(bindparam("codes", expanding=True)))
    .order_by(_HEAD.c.facility_id)
    .with_for_update(of=_HEAD)
)


_STORED_ID = select(_ENTRY.c.id).where(_ENTRY.c.entry_id == bindparam("entry_id")).scalar_subquery()


# After the lock, in one statement: whether this entry_id is already recorded (a retry may have
# committed while we queued; on PostgreSQL a statement run after the lock sees it), the item, the
# lot and the patient.
_ENTRY_CONTEXT = (
    select(_STORED_ID.label("stored_id"), _ITEM.c.id, _ITEM.c.code, _ITEM.c.unit, _ITEM.c.max_dispense_quantity,
           _LOT.c.id.label("lot_id"), _LOT.c.lot_number, _LOT.c.expiry_date,
           _PATIENT.c.id.label("patient_id"), _PATIENT.c.health_card_id, _PATIENT.c.registered,
           _PATIENT.c.deceased_on)
    .select_from(
        _ITEM.outerjoin(_LOT, and_(_LOT.c.item_id == _ITEM.c.id, _LOT.c.lot_number == bindparam("lot_number")))
        .outerjoin(_PATIENT, _PATIENT.c.health_card_id == bindparam("card")))
    .where(_ITEM.c.code == bindparam("item_code"))
)


_STORED_STMT = select(_ENTRY.c.id).where(_ENTRY.c.entry_id == bindparam("entry_id"))
_LOT_STMT = select(_LOT.c.id, _LOT.c.lot_number, _LOT.c.expiry_date).where(
    _LOT.c.item_id == bindparam("item_id"), _LOT.c.lot_number == bindparam("lot_number"))


_PATIENT_STMT = select(_PATIENT.c.id, _PATIENT.c.health_card_id, _PATIENT.c.registered,
                       _PATIENT.c.deceased_on).where(_PATIENT.c.health_card_id == bindparam("card"))


_BALANCE_KEY = and_(_BALANCE.c.facility_id == bindparam("fid"), _BALANCE.c.lot_id == bindparam("lid"))
_ON_HAND_STMT = select(_BALANCE.c.on_hand).where(_BALANCE_KEY).with_for_update()
_EFFECT = bindparam("effect", type_=Quantity())


# Moves stock and checks it in one statement: no row back means no balance row, or too little.
_MOVE_STMT = (
    update(_BALANCE).where(_BALANCE_KEY, _BALANCE.c.on_hand + _EFFECT >= 0)
    .values(on_hand=_BALANCE.c.on_hand + _EFFECT).returning(_BALANCE.c.on_hand)
)


_SET_HEAD_STMT = (
    update(_HEAD).where(_HEAD.c.facility_id == bindparam("fid"))
    .values(length=bindparam("new_length"), head_hash=bindparam("new_hash"))
)


_ENTRY_COLUMNS = tuple(c.key for c in _ENTRY.columns if c.key != "id")
_INSERT_ENTRY = insert(_ENTRY)
_INSERT_BALANCE = insert(_BALANCE)


def _pg_record_stmt():
    """PostgreSQL: _MOVE_STMT, _INSERT_ENTRY and _SET_HEAD_STMT as one statement (data-modifying
    CTEs), the entry and the head written only if the stock moved. One round trip instead of
    three for a movement that changes an existing balance: the rest (no balance row yet, too
    little stock) goes the long way. Answers (on_hand after, entry id), both None if nothing moved."""
    moved = _MOVE_STMT.cte("moved")
    # Parameters named like no column of the tables updated here: an UPDATE takes a parameter
    # named like one of its columns as a value to SET.
    values = select(*[bindparam(f"new_{c}", type_=_ENTRY.c[c].type) for c in _ENTRY_COLUMNS]).where(
        select(moved.c.on_hand).exists())
    inserted = (insert(_ENTRY).from_select(list(_ENTRY_COLUMNS), values)
                .returning(_ENTRY.c.id).cte("inserted"))
    head = (update(_HEAD)
            .where(_HEAD.c.facility_id == bindparam("fid"), select(inserted.c.id).exists())
            .values(length=bindparam("new_chain_seq", type_=_ENTRY.c.chain_seq.type),
                    head_hash=bindparam("new_chain_hash", type_=_ENTRY.c.chain_hash.type))
            .cte("head"))
    return select(select(moved.c.on_hand).scalar_subquery().label("on_hand"),
                  select(inserted.c.id).scalar_subquery().label("entry_pk")).add_cte(head)


_PG_RECORD_STMT = _pg_record_stmt()
_STORED_VIEW = (
    select(LedgerEntry, Facility.code, Item.code, Lot.lot_number, Patient.health_card_id)
    .join(Facility, Facility.id == LedgerEntry.facility_id)
    .join(Item, Item.id == LedgerEntry.item_id)
    .join(Lot, Lot.id == LedgerEntry.lot_id)
    .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
    .where(LedgerEntry.id == bindparam("id"))
)


_RX_STMT = select(Prescription.code, Prescription.patient_id, Prescription.item_id, Prescription.quantity).where(
    Prescription.code == bindparam("code"))


_DISPENSED_ON_RX = select(func.coalesce(func.sum(LedgerEntry.quantity), 0)).where(
    LedgerEntry.prescription_ref == bindparam("code"),
    LedgerEntry.kind == "dispense",
    LedgerEntry.entry_id.not_in(select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))),
)


_TARGET_STMT = (
    select(_ENTRY.c.entry_id, _ENTRY.c.facility_id, _ENTRY.c.item_id, _LOT.c.lot_number, _ENTRY.c.effect,
           _ENTRY.c.reverses)
    .select_from(_ENTRY.join(_LOT, _LOT.c.id == _ENTRY.c.lot_id))
    .where(_ENTRY.c.entry_id == bindparam("target"))
)


_REVERSED_BY_STMT = select(_ENTRY.c.entry_id).where(_ENTRY.c.reverses == bindparam("target")).limit(1)

