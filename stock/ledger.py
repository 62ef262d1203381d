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
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from stock import chain
from stock import gs1
from stock.errors import (
    AlreadyReversed,
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
from stock.quantities import to_milli, unit_allows

ADDS = ("receipt", "transfer_in")
SUBTRACTS = ("dispense", "transfer_out", "loss")
NEEDS_REASON = ("loss", "adjustment")
TRANSFERS = ("transfer_out", "transfer_in")
MAX_ID = 64


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


def effect_of(kind: str, quantity: Decimal, on_hand: Decimal) -> Decimal:
    """Signed change to stock on hand; a count moves on hand to the counted quantity."""
    if kind in ADDS:
        return quantity
    if kind in SUBTRACTS:
        return -quantity
    if kind == "adjustment":
        return quantity
    return quantity - on_hand  # count


def check_shape(e: NewEntry) -> None:
    """What can be checked without the database: presence, domain, sign."""
    def bad(field_: str, problem: str) -> InvalidEntry:
        return InvalidEntry(problem, field=field_, entry_id=e.entry_id or None)

    if not e.entry_id or not e.entry_id.strip():
        raise bad("entry_id", "entry_id is required")
    if len(e.entry_id) > MAX_ID:
        raise bad("entry_id", f"entry_id is longer than {MAX_ID} characters")
    if e.kind not in ENTRY_KINDS:
        raise bad("kind", f"kind {e.kind!r} is not one of {', '.join(ENTRY_KINDS)}")
    if not e.facility_code:
        raise bad("facility_code", "facility_code is required")
    if not e.item_code:
        raise bad("item_code", "item_code is required")
    if not e.recorded_by:
        raise bad("recorded_by", "recorded_by is required")
    if not isinstance(e.occurred_at, datetime) or e.occurred_at.tzinfo is None:
        raise bad("occurred_at", "occurred_at must be a timestamp with a zone offset")
    q = e.quantity
    if not isinstance(q, Decimal) or not q.is_finite():
        raise bad("quantity", f"quantity {q!r} is not a number")
    if e.kind == "adjustment":
        if q == 0:
            raise bad("quantity", "an adjustment's quantity must be non-zero (signed)")
    elif e.kind == "count":
        if q < 0:
            raise bad("quantity", f"a count's quantity is the quantity counted and cannot be negative ({q})")
    elif q <= 0:
        raise bad("quantity", f"a {e.kind}'s quantity must be greater than zero ({q})")
    if e.kind == "dispense" and not e.health_card_id:
        raise bad("health_card_id", "a dispense needs the patient's health_card_id")
    if e.kind in TRANSFERS and not e.counterparty_code:
        raise bad("counterparty_code", f"a {e.kind} needs the other facility's code in counterparty_code")
    if e.kind in NEEDS_REASON and not (e.reason and e.reason.strip()):
        raise bad("reason", f"a {e.kind} needs a reason")
    for name in ("health_card_id", "prescription_id", "document_number", "reverses", "lot_number",
                 "recorded_by"):
        value = getattr(e, name)
        if value is not None and len(value) > MAX_ID:
            raise bad(name, f"{name} is longer than {MAX_ID} characters")
    if e.serial_number:
        problem = serial_problem(e.serial_number)
        if problem:
            raise bad("serial_number", problem)


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


def post(session: Session, entries: list[NewEntry] | NewEntry, *, now: datetime | None = None) -> list[Posted]:
    """Record movements in order, in the caller's transaction. All or nothing is the caller's
    commit or rollback: a domain error leaves earlier entries of the batch flushed but uncommitted."""
    if isinstance(entries, NewEntry):
        entries = [entries]
    now = now or datetime.now(timezone.utc)
    return [_post_one(session, e, now) for e in entries]


def _insert_ignore(session: Session, model, values: dict, keys: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: create a row that a concurrent writer may create too."""
    ins = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(ins(model).values(**values).on_conflict_do_nothing(index_elements=keys))


def _lock_head(session: Session, facility_id: int) -> ChainHead:
    """Lock the facility's chain head: every writer of a facility queues here, which keeps the
    chain linear and makes the balance read-modify-write below safe."""
    stmt = select(ChainHead).where(ChainHead.facility_id == facility_id).with_for_update()
    head = session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()
    if head is None:
        _insert_ignore(session, ChainHead,
                       {"facility_id": facility_id, "length": 0, "head_hash": chain.GENESIS},
                       ["facility_id"])
        head = session.scalars(stmt.execution_options(populate_existing=True)).one()
    return head


def _facility(session: Session, code: str, entry_id: str, field_: str = "facility_code") -> Facility:
    fac = session.scalars(select(Facility).where(Facility.code == code)).one_or_none()
    if fac is None:
        cls = UnknownFacility if field_ == "facility_code" else UnknownCounterparty
        raise cls(f"unknown facility {code!r}", field=field_, entry_id=entry_id)
    return fac


def _lot(session: Session, e: NewEntry, item: Item) -> Lot:
    lot_number = (e.lot_number or "").strip()
    lot = session.scalars(
        select(Lot).where(Lot.item_id == item.id, Lot.lot_number == lot_number)
    ).one_or_none()
    if lot is not None:
        if e.expiry_date is not None and lot.expiry_date is not None and lot.expiry_date != e.expiry_date:
            raise InvalidEntry(
                f"lot {lot_number} of {item.code} expires on {lot.expiry_date}, not {e.expiry_date}",
                field="expiry_date", entry_id=e.entry_id)
        return lot
    if e.kind not in ("receipt", "transfer_in", "count"):
        raise InvalidEntry(
            f"{item.code} has no lot {lot_number!r}: a lot enters by a receipt or transfer_in",
            field="lot_number", entry_id=e.entry_id)
    if lot_number and e.expiry_date is None and e.kind != "count":
        raise InvalidEntry(
            f"expiry_date is required on the {e.kind} of new lot {lot_number} of {item.code}",
            field="expiry_date", entry_id=e.entry_id)
    _insert_ignore(session, Lot,
                   {"item_id": item.id, "lot_number": lot_number, "expiry_date": e.expiry_date},
                   ["item_id", "lot_number"])
    return session.scalars(
        select(Lot).where(Lot.item_id == item.id, Lot.lot_number == lot_number)
    ).one()


def _patient(session: Session, card: str) -> Patient:
    patient = session.scalars(select(Patient).where(Patient.health_card_id == card)).one_or_none()
    if patient is None:
        _insert_ignore(session, Patient, {"health_card_id": card, "registered": False},
                       ["health_card_id"])
        patient = session.scalars(select(Patient).where(Patient.health_card_id == card)).one()
    return patient


def _stored_view(session: Session, entry: LedgerEntry) -> dict:
    fac = session.get(Facility, entry.facility_id)
    item = session.get(Item, entry.item_id)
    lot = session.get(Lot, entry.lot_id)
    patient = session.get(Patient, entry.patient_id) if entry.patient_id else None
    return {
        "kind": entry.kind,
        "facility_code": fac.code,
        "item_code": item.code,
        "lot_number": lot.lot_number,
        "quantity": entry.quantity,
        "occurred_at": entry.occurred_at,
        "recorded_by": entry.recorded_by,
        "health_card_id": patient.health_card_id if patient else None,
        "prescription_id": entry.prescription_ref,
        "counterparty_code": entry.counterparty,
        "reason": entry.reason,
        "document_number": entry.document_number,
        "reverses": entry.reverses,
        "serial_number": entry.serial_number,
    }


def _same_or_conflict(session: Session, stored: LedgerEntry, e: NewEntry) -> None:
    have = _stored_view(session, stored)
    diffs = {}
    for name, old in have.items():
        new = getattr(e, name)
        if name == "lot_number":
            new = (new or "").strip()
        if name == "occurred_at":
            new = new.astimezone(timezone.utc)
        if isinstance(new, str) and new == "":
            new = None if name != "lot_number" else ""
        if old != new:
            diffs[name] = (old, new)
    if diffs:
        raise EntryConflict(e.entry_id, diffs)


def _policy_notes(session: Session, e: NewEntry, item: Item, lot: Lot, patient: Patient) -> list[PolicyNote]:
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
    rx = session.scalars(select(Prescription).where(Prescription.code == e.prescription_id)).one_or_none()
    if rx is None:
        notes.append(PolicyNote("unknown_prescription", f"prescription {e.prescription_id} is not on record"))
        return notes
    if rx.patient_id != patient.id or rx.item_id != item.id:
        notes.append(PolicyNote("prescription_mismatch",
                                f"prescription {rx.code} is for another patient or item"))
        return notes
    reversed_ids = select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))
    already = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.quantity), 0)).where(
            LedgerEntry.prescription_ref == rx.code,
            LedgerEntry.kind == "dispense",
            LedgerEntry.entry_id.not_in(reversed_ids),
        )
    )
    if already + e.quantity > rx.quantity:
        notes.append(PolicyNote("beyond_prescription",
                                f"{already + e.quantity} {item.unit} dispensed against prescription "
                                f"{rx.code} for {rx.quantity}"))
    return notes


def _check_reversible(session: Session, e: NewEntry) -> None:
    """Called under the facility lock, so two reversals of one entry cannot both pass."""
    target = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == e.reverses)).one_or_none()
    if target is None:
        raise InvalidEntry(f"reverses names unknown entry {e.reverses!r}", field="reverses", entry_id=e.entry_id)
    taken = session.scalar(select(LedgerEntry.entry_id).where(LedgerEntry.reverses == e.reverses))
    if taken is not None:
        raise AlreadyReversed(f"entry {e.reverses} was already reversed by {taken}", entry_id=e.entry_id)


def _post_one(session: Session, e: NewEntry, now: datetime) -> Posted:
    check_shape(e)
    stored = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == e.entry_id)).one_or_none()
    if stored is not None:
        _same_or_conflict(session, stored, e)
        return Posted(stored, created=False)

    facility = _facility(session, e.facility_code, e.entry_id)
    item = session.scalars(select(Item).where(Item.code == e.item_code)).one_or_none()
    if item is None:
        raise UnknownItem(f"unknown item {e.item_code!r}", entry_id=e.entry_id)
    if not unit_allows(item.unit, e.quantity):
        raise InvalidEntry(f"{e.quantity} is not a whole number of {item.unit}s ({item.code})",
                           field="quantity", entry_id=e.entry_id)
    counterparty_id = None
    if e.kind in TRANSFERS:
        other = _facility(session, e.counterparty_code, e.entry_id, "counterparty_code")
        if other.id == facility.id:
            raise InvalidEntry("a transfer's counterparty must be another facility",
                               field="counterparty_code", entry_id=e.entry_id)
        counterparty_id = other.id
    elif e.kind == "receipt" and e.counterparty_code:
        other = session.scalars(select(Facility).where(Facility.code == e.counterparty_code)).one_or_none()
        counterparty_id = other.id if other else None

    head = _lock_head(session, facility.id)
    # A retry of this very entry may have committed while we queued for the lock.
    stored = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == e.entry_id)).one_or_none()
    if stored is not None:
        _same_or_conflict(session, stored, e)
        return Posted(stored, created=False)
    if e.reverses:
        _check_reversible(session, e)
    lot = _lot(session, e, item)
    patient = _patient(session, e.health_card_id) if e.health_card_id else None
    notes = _policy_notes(session, e, item, lot, patient) if e.kind == "dispense" else []

    balance = session.scalars(
        select(Balance).where(Balance.facility_id == facility.id, Balance.lot_id == lot.id)
        .with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    on_hand = balance.on_hand if balance is not None else Decimal(0)
    effect = effect_of(e.kind, e.quantity, on_hand)
    if on_hand + effect < 0:
        raise InsufficientStock(facility=facility.code, item=item.code, lot=lot.lot_number,
                                on_hand=on_hand, asked=-effect, entry_id=e.entry_id)
    if balance is None:
        session.add(Balance(facility_id=facility.id, item_id=item.id, lot_id=lot.id,
                            on_hand=on_hand + effect))
    else:
        balance.on_hand = on_hand + effect

    entry = LedgerEntry(
        entry_id=e.entry_id, facility_id=facility.id, kind=e.kind, item_id=item.id, lot_id=lot.id,
        quantity=e.quantity, effect=effect, book_quantity=on_hand if e.kind == "count" else None,
        occurred_at=e.occurred_at.astimezone(timezone.utc), recorded_at=now,
        recorded_by=e.recorded_by, patient_id=patient.id if patient else None,
        prescription_ref=e.prescription_id or None, counterparty=e.counterparty_code or None,
        counterparty_facility_id=counterparty_id, reason=e.reason or None,
        document_number=e.document_number or None, reverses=e.reverses or None,
        serial_number=e.serial_number or None, chain_seq=head.length + 1,
    )
    entry.chain_hash = chain.link(head.head_hash, hash_values(entry, facility.code, item.code, lot,
                                                                patient.health_card_id if patient else None))
    head.length = entry.chain_seq
    head.head_hash = entry.chain_hash
    session.add(entry)
    session.flush()
    return Posted(entry, created=True, notes=notes)


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
    if not reason or not reason.strip():
        raise InvalidEntry("a reversal needs a reason", field="reason", entry_id=entry_id)
    if target.effect == 0:
        raise InvalidEntry(f"entry {entry_id} changed no stock; there is nothing to reverse",
                           field="entry_id", entry_id=entry_id)
    view = _stored_view(session, target)
    return post(session, NewEntry(
        entry_id=new_id or new_entry_id(), kind="adjustment", facility_code=view["facility_code"],
        item_code=view["item_code"], lot_number=view["lot_number"], quantity=-target.effect,
        occurred_at=now, recorded_by=by, reason=reason, reverses=entry_id,
    ), now=now)[0]


__all__ = ["NewEntry", "Posted", "PolicyNote", "post", "reverse", "effect_of", "check_shape",
           "new_entry_id", "hash_values", "serial_problem"]
