"""Movements as clients state them, and what posting one answers: the terms of the data contract,
the shape checks that need no database, and the values the hash chain covers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from stock import chain
from stock import gs1
from stock import rules
from stock.errors import InvalidEntry
from stock.models import ENTRY_KINDS, LedgerEntry, Lot
from stock.quantities import to_milli


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

    def __post_init__(self):
        # Texts as the ledger keeps them (the rule book's), whichever path states the movement.
        for name, value in rules.stored_texts(vars(self)).items():
            object.__setattr__(self, name, value)


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

