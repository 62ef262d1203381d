"""Posting one movement: under its facility's chain lock, the rule book's checks that need the
database (idempotency, lot, reversal, time, stock), the policy notes of a dispense, and the
entry, balance and chain head written together."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from stock import chain
from stock import rules
from stock.entries import (
    NewEntry,
    PolicyNote,
    Posted,
    check_shape,
    hash_values,
)
from stock.errors import (
    EntryConflict,
    InsufficientStock,
    UnknownCounterparty,
    UnknownFacility,
    UnknownItem,
)
from stock.ledger_sql import (
    _DISPENSED_ON_RX,
    _ENTRY_COLUMNS,
    _ENTRY_CONTEXT,
    _FACILITY_STMT,
    _HEAD_STMT,
    _INSERT_BALANCE,
    _INSERT_ENTRY,
    _ItemRow,
    _LOT_STMT,
    _LotRow,
    _MOVE_STMT,
    _ON_HAND_STMT,
    _PATIENT_STMT,
    _PG_RECORD_STMT,
    _PatientRow,
    _REVERSED_BY_STMT,
    _RX_STMT,
    _SET_HEAD_STMT,
    _STORED_STMT,
    _STORED_VIEW,
    _TARGET_STMT,
)
from stock.models import Balance, ChainHead, LedgerEntry, Lot, Patient
from stock.rules import TRANSFERS


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
    problem = (rules.whole_units_problem(item.unit, e.quantity, item.code, entry_id=e.entry_id)
               or rules.transfer_problem(e.kind, facility_code, e.counterparty_code, entry_id=e.entry_id))
    if problem is not None:
        raise problem
    counterparty_id = None
    if e.kind in TRANSFERS:
        other = conn.execute(_FACILITY_STMT, {"code": e.counterparty_code}).first()
        if other is None:
            raise UnknownCounterparty(f"unknown facility {e.counterparty_code!r}", field="counterparty_code",
                                      entry_id=e.entry_id)
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
    if rules.over_ceiling(e.quantity, item.max_dispense_quantity):
        notes.append(PolicyNote("over_ceiling", rules.over_ceiling_message(e.quantity, item.unit,
                                                                           item.max_dispense_quantity, item.code)))
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

