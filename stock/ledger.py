"""The one write path into the ledger.

``post`` is how every movement enters: the importer, the API, the pages and the tests all come
through here (the importer through its bulk twin in ``stock.bulk``, which keeps the same rules).
It validates, applies idempotency, keeps balances and the hash chain in step, and only flushes:
the caller (a request, a job, a CLI command) owns the transaction and commits or rolls back.

Malformed or impossible movements raise a domain error. Movements that break a policy (a patient
not in the register or deceased, no or an exceeded prescription, over the protocol ceiling, an
expired lot) are recorded as they happened and reported back as notes: they are the evidence
detection needs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from stock import chain
from stock import gs1
from stock import rules
from stock.rules import TRANSFERS
from stock.errors import (
    EntryConflict,
    InsufficientStock,
    InvalidEntry,
    UnknownCounterparty,
    UnknownEntry,
    UnknownFacility,
    UnknownItem,
)
from stock.models import (
    ENTRY_KINDS,
    Balance,
    ChainHead,
    Facility,
    Item,
    LedgerEntry,
    Lot,
    Patient,
    Prescription,
)
from stock.quantities import Quantity, to_milli, unit_allows

@dataclass(frozen=True)
class NewEntry:
    """A movement as a client states it, in the terms of the data contract."""

    entry_id: str
    kind: str
    facility_code: str
    item_code: str
    quantity: Decimal
    occurred_at: datetime
    recorded_by: str
    lot_number: str = ""
    expiry_date: date | None = None
    health_card_id: str | None = None
    prescription_id: str | None = None
    counterparty_code: str | None = None
    reason: str | None = None
    document_number: str | None = None
    reverses: str | None = None
    serial_number: str | None = None
    """The pack's GS1 serial (AI 21) when the pack was scanned."""


@dataclass(frozen=True)
class PolicyNote:
    """A policy the movement breaks. Recorded, never refused; forms may ask for a reason."""

    code: str
    message: str


@dataclass
class Posted:
    entry: LedgerEntry
    created: bool
    notes: list[PolicyNote] = field(default_factory=list)


def new_entry_id() -> str:
    return str(uuid.uuid4())


def check_shape(e: NewEntry) -> None:
    """What can be checked without the database: the rule book's shape of an entry, and the serial."""
    problem = rules.shape_problem(e, ENTRY_KINDS, chain.refused_character)
    if problem is not None:
        raise problem
    if e.serial_number:
        problem = serial_problem(e.serial_number)
        if problem:
            raise InvalidEntry(problem, field="serial_number", entry_id=e.entry_id)


def serial_problem(value: str) -> str | None:
    """Why ``value`` cannot be a GS1 serial number (AI 21), or None: 1 to 20 characters of GS1's
    character set 82 (letters, digits and ``!"%&'()*+,-./:;<=>?_``)."""
    if len(value) > gs1.SERIAL_MAX:
        return f"serial_number {value!r} is longer than {gs1.SERIAL_MAX} characters (GS1 AI 21)"
    bad = sorted(set(value) - gs1.CSET82)
    if bad:
        return (f"serial_number {value!r} holds {', '.join(repr(c) for c in bad)}, outside GS1's "
                "character set for serials (letters, digits and !\"%&'()*+,-./:;<=>?_)")
    return None


def post(session: Session, entries: list[NewEntry] | NewEntry, *, now: datetime | None = None,
         catch_up: timedelta | None = None) -> list[Posted]:
    """Record movements in order, in the caller's transaction. All or nothing is the caller's
    commit or rollback: a domain error leaves earlier entries of the batch flushed but uncommitted,
    and nothing of the entry that raised it. ``catch_up``: the rule book's catch-up window (an
    entry older than this at its recording needs a reason; None: no limit)."""
    if isinstance(entries, NewEntry):
        entries = [entries]
    now = now or datetime.now(timezone.utc)

    if not entries:
        return []
    # The statements below are Core statements on the session's connection, which do not autoflush:
    # objects the caller added (a new facility, item or patient) reach the database first.
    session.flush()
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    if len(entries) > 1:
        lock_chains(session, [e.facility_code for e in entries])
    return [_post_one(session, conn, pg, e, now, catch_up) for e in entries]


def lock_chains(session: Session, facility_codes: list[str]) -> None:
    """Take the chain-head locks of these facilities now, in facility id order, as the bulk import
    does. A transaction that writes to several facilities takes them all before its first write:
    two such transactions then queue in one order and never wait for each other in a cycle, which
    PostgreSQL would break by failing one ("deadlock detected"). Posting locks each head again as
    it goes, at no cost. SQLite needs none of this: a writing transaction holds the database."""
    codes = sorted(set(facility_codes))
    if len(codes) < 2 or session.get_bind().dialect.name != "postgresql":
        return
    session.connection().execute(_LOCK_HEADS_STMT, {"codes": codes}).all()


# Tables of the hot path. The write path speaks Core on the session's connection: the ORM's unit of
# work, identity map and per-object events cost more than the SQL itself for one small entry.
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


def _lock_head(conn, pg: bool, facility_code: str):
    """(facility id, facility code, chain length, head hash) with the chain head locked, or None for
    an unknown facility. A head that is missing (a facility from before heads were made with it) is
    created first, so concurrent first writers only ever lock it."""
    row = conn.execute(_HEAD_STMT, {"code": facility_code}).first()
    if row is not None:
        return row
    fac = conn.execute(_FACILITY_STMT, {"code": facility_code}).first()
    if fac is None:
        return None
    _insert_ignore_conn(conn, pg, ChainHead, {"facility_id": fac.id, "length": 0, "head_hash": chain.GENESIS},
                        ["facility_id"])
    return conn.execute(_HEAD_STMT, {"code": facility_code}).one()


def _insert_ignore_conn(conn, pg: bool, model, values: dict, keys: list[str]) -> None:
    ins = pg_insert if pg else sqlite_insert
    conn.execute(ins(model.__table__).values(**values).on_conflict_do_nothing(index_elements=keys))


def _stored_or_none(session: Session, conn, e: NewEntry, stored_id: int | None = None,
                    look: bool = False) -> Posted | None:
    """The stored entry of a retry (same content), a conflict (other content), or None."""
    if look:
        stored_id = conn.execute(_STORED_STMT, {"entry_id": e.entry_id}).scalar()
    if stored_id is None:
        return None
    stored, view = _stored_with_view(session, stored_id)
    _compare(view, e)
    return Posted(stored, created=False)


def _post_one(session: Session, conn, pg: bool, e: NewEntry, now: datetime, catch_up: timedelta | None) -> Posted:
    check_shape(e)
    head = _lock_head(conn, pg, e.facility_code)
    if head is None:
        # The entry_id decides first: a retry whose facility has since become unknown is a conflict.
        if (done := _stored_or_none(session, conn, e, look=True)) is not None:
            return done
        raise UnknownFacility(f"unknown facility {e.facility_code!r}", field="facility_code", entry_id=e.entry_id)
    facility_id, facility_code, length, head_hash = head

    lot_number = (e.lot_number or "").strip()
    ctx = conn.execute(_ENTRY_CONTEXT, {"entry_id": e.entry_id, "item_code": e.item_code,
                                        "lot_number": lot_number, "card": e.health_card_id or None}).first()
    if ctx is None:
        if (done := _stored_or_none(session, conn, e, look=True)) is not None:
            return done
        raise UnknownItem(f"unknown item {e.item_code!r}", entry_id=e.entry_id)
    if (done := _stored_or_none(session, conn, e, ctx.stored_id)) is not None:
        return done
    problem = rules.time_problem(chain.epoch_us(e.occurred_at), chain.epoch_us(now), e.reason, catch_up,
                                 occurred=e.occurred_at.isoformat(), recorded=now.isoformat(), entry_id=e.entry_id)
    if problem is not None:  # the time rule binds new entries only: a retry answers as before
        raise problem
    item = _ItemRow(ctx.id, ctx.code, ctx.unit, ctx.max_dispense_quantity)
    if not unit_allows(item.unit, e.quantity):
        raise InvalidEntry(f"{e.quantity} is not a whole number of {item.unit}s ({item.code})",
                           field="quantity", entry_id=e.entry_id)
    counterparty_id = None
    if e.kind in TRANSFERS:
        other = conn.execute(_FACILITY_STMT, {"code": e.counterparty_code}).first()
        if other is None:
            raise UnknownCounterparty(f"unknown facility {e.counterparty_code!r}", field="counterparty_code",
                                      entry_id=e.entry_id)
        if other.id == facility_id:
            raise InvalidEntry("a transfer's counterparty must be another facility",
                               field="counterparty_code", entry_id=e.entry_id)
        counterparty_id = other.id
    elif e.kind == "receipt" and e.counterparty_code:
        other = conn.execute(_FACILITY_STMT, {"code": e.counterparty_code}).first()
        counterparty_id = other.id if other else None

    if e.reverses:
        _check_reversible(conn, e, facility_id, item.id, lot_number)
    lot = (_LotRow(ctx.lot_id, ctx.lot_number, ctx.expiry_date) if ctx.lot_id is not None
           else None)
    lot = _lot(conn, pg, e, item, lot_number, lot)
    patient = None
    if e.health_card_id:
        patient = (_PatientRow(ctx.patient_id, ctx.health_card_id, ctx.registered, ctx.deceased_on)
                   if ctx.patient_id is not None else _patient(conn, pg, e.health_card_id))
    notes = _policy_notes(session, e, item, lot, patient) if e.kind == "dispense" else []

    key = {"fid": facility_id, "lid": lot.id}
    patient_id = patient.id if patient else None
    card = patient.health_card_id if patient else None
    if e.kind == "count":
        on_hand = conn.execute(_ON_HAND_STMT, key).scalar()
        exists = on_hand is not None
        on_hand = Decimal(0) if on_hand is None else on_hand
        effect = rules.signed(e.kind, e.quantity, on_hand)
        if exists:
            conn.execute(_MOVE_STMT, {**key, "effect": effect}).one()
    else:
        effect = rules.signed(e.kind, e.quantity, Decimal(0))
        if pg:
            # The usual case in one round trip: stock moved, entry inserted, chain head advanced.
            entry = _entry(e, now, facility_id, facility_code, item, lot, patient_id, card, counterparty_id,
                           length, head_hash, effect, None)
            row = conn.execute(_PG_RECORD_STMT, {**key, "effect": effect,
                                                 **{f"new_{c}": getattr(entry, c) for c in _ENTRY_COLUMNS}}).one()
            if row.entry_pk is not None:
                _refresh_cached(session, Balance, (facility_id, lot.id), on_hand=row.on_hand)
                return _recorded(session, entry, row.entry_pk, facility_id, notes)
            after = None  # nothing moved, nothing written
        else:
            after = conn.execute(_MOVE_STMT, {**key, "effect": effect}).scalar()
        if after is not None:
            exists, on_hand = True, after - effect
        else:  # no balance row, or too little stock
            on_hand = conn.execute(_ON_HAND_STMT, key).scalar()
            exists = on_hand is not None
            on_hand = Decimal(0) if on_hand is None else on_hand
    if on_hand + effect < 0:
        raise InsufficientStock(facility=facility_code, item=item.code, lot=lot.lot_number,
                                on_hand=on_hand, asked=-effect, entry_id=e.entry_id)
    if not exists:
        conn.execute(_INSERT_BALANCE, {"facility_id": facility_id, "item_id": item.id, "lot_id": lot.id,
                                       "on_hand": on_hand + effect})
    _refresh_cached(session, Balance, (facility_id, lot.id), on_hand=on_hand + effect)

    entry = _entry(e, now, facility_id, facility_code, item, lot, patient_id, card, counterparty_id,
                   length, head_hash, effect, on_hand if e.kind == "count" else None)
    values = {c: getattr(entry, c) for c in _ENTRY_COLUMNS}
    entry_pk = conn.execute(_INSERT_ENTRY, values).inserted_primary_key[0]
    conn.execute(_SET_HEAD_STMT, {"fid": facility_id, "new_length": entry.chain_seq,
                                  "new_hash": entry.chain_hash})
    return _recorded(session, entry, entry_pk, facility_id, notes)


def _entry(e: NewEntry, now: datetime, facility_id: int, facility_code: str, item: _ItemRow, lot: _LotRow,
           patient_id: int | None, card: str | None, counterparty_id: int | None, length: int,
           head_hash: str, effect: Decimal, book_quantity: Decimal | None) -> LedgerEntry:
    """The new entry, linked to the facility's chain after ``head_hash``."""
    entry = LedgerEntry(
        entry_id=e.entry_id, facility_id=facility_id, kind=e.kind, item_id=item.id, lot_id=lot.id,
        quantity=e.quantity, effect=effect, book_quantity=book_quantity,
        occurred_at=e.occurred_at.astimezone(timezone.utc), recorded_at=now,
        recorded_by=e.recorded_by, patient_id=patient_id,
        prescription_ref=e.prescription_id or None, counterparty=e.counterparty_code or None,
        counterparty_facility_id=counterparty_id, reason=e.reason or None,
        document_number=e.document_number or None, reverses=e.reverses or None,
        serial_number=e.serial_number or None, chain_seq=length + 1,
    )
    entry.chain_hash = chain.link(head_hash, hash_values(entry, facility_code, item.code, lot, card))
    return entry


def _recorded(session: Session, entry: LedgerEntry, entry_pk: int, facility_id: int,
              notes: list[PolicyNote]) -> Posted:
    entry.id = entry_pk
    _refresh_cached(session, ChainHead, (facility_id,), length=entry.chain_seq, head_hash=entry.chain_hash)
    # The entry as if loaded: in the session's identity map, with nothing left to flush.
    make_transient_to_detached(entry)
    session.add(entry)
    return Posted(entry, created=True, notes=notes)


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


def _refresh_cached(session: Session, model, key: tuple, **values) -> None:
    """Bring a row the session already holds (a caller read it) in step with what Core wrote."""
    obj = session.identity_map.get(identity_key(model, key))
    if obj is not None:
        for name, value in values.items():
            set_committed_value(obj, name, value)


def _lot(conn, pg: bool, e: NewEntry, item: _ItemRow, lot_number: str, lot: _LotRow | None) -> _LotRow:
    """The entry's lot, created when the rule book's lot rule lets this entry bring it in."""
    stored = None if lot is None else _iso(lot.expiry_date)
    problem = rules.lot_problem(e.kind, item.code, lot_number, _iso(e.expiry_date), stored,
                                e.occurred_at.astimezone(timezone.utc).date().isoformat(), e.reason,
                                entry_id=e.entry_id)
    if problem is not None:
        raise problem
    if lot is not None:
        return lot
    _insert_ignore_conn(conn, pg, Lot, {"item_id": item.id, "lot_number": lot_number,
                                        "expiry_date": e.expiry_date}, ["item_id", "lot_number"])
    return _LotRow(*conn.execute(_LOT_STMT, {"item_id": item.id, "lot_number": lot_number}).one())


def _iso(day: date | None) -> str:
    """A date as the rule book compares it: ISO text, '' for none."""
    return day.isoformat() if day is not None else ""


def _patient(conn, pg: bool, card: str) -> _PatientRow:
    """The patient of a health card, registered as unknown (not in the register) when first seen."""
    _insert_ignore_conn(conn, pg, Patient, {"health_card_id": card, "registered": False}, ["health_card_id"])
    return _PatientRow(*conn.execute(_PATIENT_STMT, {"card": card}).one())


_STORED_VIEW = (
    select(LedgerEntry, Facility.code, Item.code, Lot.lot_number, Patient.health_card_id)
    .join(Facility, Facility.id == LedgerEntry.facility_id)
    .join(Item, Item.id == LedgerEntry.item_id)
    .join(Lot, Lot.id == LedgerEntry.lot_id)
    .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
    .where(LedgerEntry.id == bindparam("id"))
)


def _stored_with_view(session: Session, entry_id_pk: int) -> tuple[LedgerEntry, dict]:
    """A stored entry and its content in the terms of the data contract, in one query."""
    entry, facility_code, item_code, lot_number, card = session.execute(
        _STORED_VIEW, {"id": entry_id_pk}).one()
    return entry, {
        "kind": entry.kind,
        "facility_code": facility_code,
        "item_code": item_code,
        "lot_number": lot_number,
        "quantity": entry.quantity,
        "occurred_at": entry.occurred_at,
        "recorded_by": entry.recorded_by,
        "health_card_id": card,
        "prescription_id": entry.prescription_ref,
        "counterparty_code": entry.counterparty,
        "reason": entry.reason,
        "document_number": entry.document_number,
        "reverses": entry.reverses,
        "serial_number": entry.serial_number,
    }


def _stored_view(session: Session, entry: LedgerEntry) -> dict:
    return _stored_with_view(session, entry.id)[1]


def _compare(have: dict, e: NewEntry) -> None:
    """The rule book's idempotency comparison of a stored entry with ``e``."""
    given = [getattr(e, name) for name in rules.CONTENT]
    given[rules.CONTENT.index("lot_number")] = (e.lot_number or "").strip()
    given[rules.CONTENT.index("occurred_at")] = e.occurred_at.astimezone(timezone.utc)
    diffs = rules.content_differences([have[name] for name in rules.CONTENT], given)
    if diffs:
        raise EntryConflict(e.entry_id, diffs)


_RX_STMT = select(Prescription.code, Prescription.patient_id, Prescription.item_id, Prescription.quantity).where(
    Prescription.code == bindparam("code"))
_DISPENSED_ON_RX = select(func.coalesce(func.sum(LedgerEntry.quantity), 0)).where(
    LedgerEntry.prescription_ref == bindparam("code"),
    LedgerEntry.kind == "dispense",
    LedgerEntry.entry_id.not_in(select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))),
)


def _policy_notes(session: Session, e: NewEntry, item: _ItemRow, lot: _LotRow,
                  patient: _PatientRow) -> list[PolicyNote]:
    notes: list[PolicyNote] = []
    day = e.occurred_at.date()
    if not patient.registered:
        notes.append(PolicyNote("unregistered_patient",
                                 f"health card {patient.health_card_id} is not in the patient register"))
    if patient.deceased_on is not None and day > patient.deceased_on:
        notes.append(PolicyNote("deceased_patient",
                                f"patient {patient.health_card_id} died on {patient.deceased_on}"))
    if lot.expiry_date is not None and lot.expiry_date < day:
        notes.append(PolicyNote("expired_lot", f"lot {lot.lot_number} expired on {lot.expiry_date}"))
    if item.max_dispense_quantity is not None and e.quantity > item.max_dispense_quantity:
        notes.append(PolicyNote("over_ceiling",
                                f"{e.quantity} {item.unit} is over the protocol ceiling of "
                                f"{item.max_dispense_quantity} for {item.code}"))
    if not e.prescription_id:
        notes.append(PolicyNote("no_prescription", "dispensed without a prescription"))
        return notes
    rx = session.execute(_RX_STMT, {"code": e.prescription_id}).first()
    if rx is None:
        notes.append(PolicyNote("unknown_prescription", f"prescription {e.prescription_id} is not on record"))
        return notes
    if rx.patient_id != patient.id or rx.item_id != item.id:
        notes.append(PolicyNote("prescription_mismatch",
                                f"prescription {rx.code} is for another patient or item"))
        return notes
    already = session.scalar(_DISPENSED_ON_RX, {"code": rx.code})
    if already + e.quantity > rx.quantity:
        notes.append(PolicyNote("beyond_prescription",
                                f"{already + e.quantity} {item.unit} dispensed against prescription "
                                f"{rx.code} for {rx.quantity}"))
    return notes


_TARGET_STMT = (
    select(_ENTRY.c.entry_id, _ENTRY.c.facility_id, _ENTRY.c.item_id, _LOT.c.lot_number, _ENTRY.c.effect,
           _ENTRY.c.reverses)
    .select_from(_ENTRY.join(_LOT, _LOT.c.id == _ENTRY.c.lot_id))
    .where(_ENTRY.c.entry_id == bindparam("target"))
)
_REVERSED_BY_STMT = select(_ENTRY.c.entry_id).where(_ENTRY.c.reverses == bindparam("target")).limit(1)


def _check_reversible(conn, e: NewEntry, facility_id: int, item_id: int, lot_number: str) -> None:
    """The rule book's reversal rule for ``e``. Called under the facility lock, so two reversals of
    one entry cannot both pass."""
    row = conn.execute(_TARGET_STMT, {"target": e.reverses}).first()
    target = rules.Movement(*row) if row is not None else None
    by = conn.execute(_REVERSED_BY_STMT, {"target": e.reverses}).scalar() if target is not None else None
    mine = rules.Movement(e.entry_id, facility_id, item_id, lot_number,
                          rules.signed(e.kind, e.quantity), e.reverses)
    problem = rules.reversal_problem(mine, e.kind, target, by)
    if problem is not None:
        raise problem


def hash_values(entry: LedgerEntry, facility_code: str, item_code: str, lot: Lot,
                health_card_id: str | None) -> tuple:
    """The values the chain covers, in chain.FIELDS order (after the version)."""
    return (
        facility_code, entry.chain_seq, entry.entry_id, entry.kind, item_code, lot.lot_number,
        lot.expiry_date, to_milli(entry.quantity), to_milli(entry.effect),
        None if entry.book_quantity is None else to_milli(entry.book_quantity),
        chain.epoch_us(entry.occurred_at), chain.epoch_us(entry.recorded_at), entry.recorded_by,
        health_card_id, entry.prescription_ref, entry.counterparty, entry.reason,
        entry.document_number, entry.reverses, entry.serial_number,
    )


def reverse(session: Session, entry_id: str, *, reason: str, by: str,
            now: datetime | None = None, new_id: str | None = None) -> Posted:
    """Correct an entry by a compensating adjustment that undoes its effect on stock.

    History is never rewritten: the original stays, and the reversal names it, the reason and
    who made it. An entry can be reversed once.
    """
    now = now or datetime.now(timezone.utc)
    target = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).one_or_none()
    if target is None:
        raise UnknownEntry(f"no entry {entry_id!r} to reverse", entry_id=entry_id)
    view = _stored_view(session, target)
    inverse = NewEntry(
        entry_id=new_id or new_entry_id(), kind="adjustment", facility_code=view["facility_code"],
        item_code=view["item_code"], lot_number=view["lot_number"], quantity=-target.effect,
        occurred_at=now, recorded_by=by, reason=reason, reverses=entry_id,
    )
    if target.effect == 0:  # the inverse of nothing would be refused for its shape: say why first
        raise rules.reversal_problem(
            rules.Movement(inverse.entry_id, target.facility_id, target.item_id, view["lot_number"], 0, entry_id),
            "adjustment", rules.Movement(entry_id, target.facility_id, target.item_id, view["lot_number"], 0),
            None)
    return post(session, inverse, now=now)[0]


__all__ = ["NewEntry", "Posted", "PolicyNote", "post", "lock_chains", "reverse", "check_shape",
           "new_entry_id", "hash_values", "serial_problem"]
