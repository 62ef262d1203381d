"""The canonical text of a ledger entry, which the hash chain covers: declared once.

``FIELDS`` names each field, where the ledger keeps it and how it is written as text. Every
encoder follows from it: ``encode`` (Python, for ``post``), ``payload_sql`` (the SQL with which
SQLite and PostgreSQL write the same text while verifying), and the bulk import's column-wise
encoder (``stock.bulk_write``), which converts each field by its encoding.

The text starts with the version and separates fields with U+001F; the record mark U+001E goes
before it in the hash. The encodings:

- ``TEXT``: the text itself; none is empty.
- ``INT``: a whole number in decimal (positions, and quantities as whole thousandths).
- ``DATE``: ISO 8601, YYYY-MM-DD.
- ``EPOCH_US``: a timestamp as whole microseconds since 1970-01-01T00:00Z.

Changing a field, its order or its encoding invalidates every stored chain: never reorder, only
version and append.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timezone

GENESIS = "0" * 64
SEP = "\x1f"
RECORD = "\x1e"
REFUSED = ("\x00", RECORD, SEP)
"""Characters no text of an entry may hold. The canonical text marks a record with U+001E and
separates its fields with U+001F: text holding them could be moved from one field into the next
and leave the hash unchanged. PostgreSQL cannot store U+0000 at all."""
VERSION = "1"

TEXT, INT, DATE, EPOCH_US = "text", "int", "date", "epoch_us"


@dataclass(frozen=True)
class Field:
    """One field of the canonical text: its name, its encoding and the SQL expression of its stored
    value in the verification query (aliases: e ledger_entry, f facility, i item, l lot, p patient).
    An ``optional`` field was added after chains were first written: it is encoded only when it has
    a value (then after a separator like every other field), so an entry without it encodes exactly
    as before and every stored chain still verifies. A value may hold no separator (the ledger
    refuses one), so an optional field cannot pass for part of the one before."""

    name: str
    encoding: str
    column: str
    optional: bool = False


FIELDS = (
    Field("facility_code", TEXT, "f.code"),
    Field("chain_seq", INT, "e.chain_seq"),
    Field("entry_id", TEXT, "e.entry_id"),
    Field("kind", TEXT, "e.kind"),
    Field("item_code", TEXT, "i.code"),
    Field("lot_number", TEXT, "l.lot_number"),
    Field("expiry_date", DATE, "l.expiry_date"),
    Field("quantity_milli", INT, "e.quantity"),
    Field("effect_milli", INT, "e.effect"),
    Field("book_milli", INT, "e.book_quantity"),
    Field("occurred_us", EPOCH_US, "e.occurred_at"),
    Field("recorded_us", EPOCH_US, "e.recorded_at"),
    Field("recorded_by", TEXT, "e.recorded_by"),
    Field("health_card_id", TEXT, "p.health_card_id"),
    Field("prescription_ref", TEXT, "e.prescription_ref"),
    Field("counterparty", TEXT, "e.counterparty"),
    Field("reason", TEXT, "e.reason"),
    Field("document_number", TEXT, "e.document_number"),
    Field("reverses", TEXT, "e.reverses"),
    Field("serial_number", TEXT, "e.serial_number", optional=True),
)
"""The canonical fields after the version, in order."""
REQUIRED = tuple(f for f in FIELDS if not f.optional)
OPTIONAL = tuple(f for f in FIELDS if f.optional)
assert FIELDS == REQUIRED + OPTIONAL, "optional fields come last"
NAMES = tuple(f.name for f in FIELDS)


def refused_character(value: str) -> str | None:
    """Why ``value`` cannot be stored in an entry, or None when it can."""
    for ch in REFUSED:
        if ch in value:
            return f"contains the control character U+{ord(ch):04X}, which an entry cannot hold"
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


def epoch_us(value: datetime) -> int:
    """Microseconds since the epoch: exact, and the same whatever zone or database it came from."""
    return (value - _EPOCH) // _US


# --- Python ------------------------------------------------------------------------------------

def _epoch_text(value) -> str:
    return str(value if isinstance(value, int) else epoch_us(value))


PYTHON = {
    TEXT: str,
    INT: lambda v: str(int(v)),
    DATE: lambda v: v.isoformat() if isinstance(v, date) else str(v),
    EPOCH_US: _epoch_text,
}
"""Each encoding's text of a value (none is always empty)."""


def texts(values: tuple) -> list[str]:
    """Each value's canonical text, in FIELDS order; an optional field without a value is left out."""
    return [("" if v is None else PYTHON[f.encoding](v)) for f, v in zip(FIELDS, values)
            if not (f.optional and v is None)]


def encode(values: tuple) -> bytes:
    """Canonical bytes of one entry; ``values`` in FIELDS order (an optional one may be left off)."""
    return SEP.join([VERSION, *texts(values)]).encode("utf-8")


def link(prev_hash: str, values: tuple) -> str:
    """The hash of an entry with ``values`` (FIELDS order) after ``prev_hash``."""
    return hashlib.sha256((prev_hash + RECORD).encode("utf-8") + encode(values)).hexdigest()


# --- SQL ---------------------------------------------------------------------------------------

def _sqlite_us(column: str) -> str:
    # SQLite keeps SQLAlchemy's 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC. Seconds from the text without
    # its fraction: SQLite keeps times in whole milliseconds, so '...:59.9996' would round up to the
    # next second. unixepoch() (SQLite 3.38+) gives the same integer as CAST(strftime('%s', ...)),
    # NULL included, without formatting it as text and parsing it back.
    seconds = "unixepoch({})" if sqlite3.sqlite_version_info >= (3, 38) else "CAST(strftime('%s', {}) AS INTEGER)"
    return seconds.format(f"substr({column}, 1, 19)") + f" * 1000000 + CAST(substr({column}, 21, 6) AS INTEGER)"


SQLITE = {TEXT: "{}", INT: "{}", DATE: "{}", EPOCH_US: None}
"""Each encoding's SQLite expression; printf's %s writes NULL as '' and a number as its text."""
POSTGRES = {TEXT: "COALESCE({}, '')", INT: "COALESCE({}::text, '')", DATE: "COALESCE({}::text, '')",
            EPOCH_US: "COALESCE((extract(epoch from {}) * 1000000)::bigint::text, '')"}
"""Each encoding's PostgreSQL expression, NULL as ''."""


def payload_sql(dialect: str, *, head: bool = False) -> str:
    """An SQL expression of each entry's canonical text after the version (``head``: with the record
    mark, the version and a separator before it), built from FIELDS."""
    if dialect == "postgresql":
        parts = [POSTGRES[f.encoding].format(f.column) for f in REQUIRED]
        text = " || chr(31) || ".join(parts)
        if head:
            text = f"chr(30) || '{VERSION}' || chr(31) || {text}"
        tail = "".join(f" || COALESCE(chr(31) || {f.column}, '')" for f in OPTIONAL)
        return text + tail
    # One printf per row instead of a chain of concatenations.
    parts = [_sqlite_us(f.column) if f.encoding == EPOCH_US else SQLITE[f.encoding].format(f.column)
             for f in REQUIRED]
    prefix = RECORD + VERSION + SEP if head else ""
    tail = "".join(f" || COALESCE(char(31) || {f.column}, '')" for f in OPTIONAL)
    return f"printf('{prefix}{SEP.join(['%s'] * len(parts))}', {', '.join(parts)}){tail}"
