"""What a FHIR export reads: the ledger's movements and the monthly reports an export asks for
(``Query``), as statements, and their rows in batches as plain named tuples."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, String, and_, exists, select, type_coerce, union
from sqlalchemy.orm import Session, aliased

from stock.models import Facility, Item, LedgerEntry, Lot, Patient, Prescription, StockReport, UTCDateTime
from web.interop import fhir_resources as fr

LEDGER_KINDS = ("dispense", "receipt", "transfer_in", "transfer_out", "count")
BATCH = 2000


@dataclass
class Query:
    version: str
    facility_code: str | None
    since: datetime | None
    until: datetime | None
    occurred_since: datetime | None
    occurred_until: datetime | None
    kinds: tuple[str, ...]
    key: str | None = None


def ledger_stmt(q: Query):
    other = aliased(Facility)
    stmt = (
        select(LedgerEntry.entry_id, LedgerEntry.kind,
               type_coerce(LedgerEntry.quantity, BigInteger).label("quantity"),   # thousandths: fr.milli
               type_coerce(LedgerEntry.book_quantity, BigInteger).label("book_quantity"),
               _stored(LedgerEntry.occurred_at, "occurred"), _stored(LedgerEntry.recorded_at, "recorded"),
               LedgerEntry.recorded_by,
               LedgerEntry.prescription_ref, LedgerEntry.counterparty, LedgerEntry.document_number,
               LedgerEntry.serial_number, Facility.code.label("facility_code"), Facility.name.label("facility_name"),
               Item.code.label("item_code"), Item.name.label("item_name"), Item.unit, Item.atc_code.label("atc"),
               Item.gtin, Lot.lot_number.label("lot"), Lot.expiry_date.label("expiry"),
               Patient.health_card_id.label("card"), other.code.label("counterparty_code"),
               other.name.label("counterparty_name"), LedgerEntry.facility_id, LedgerEntry.counterparty_facility_id)
        .join(Facility, Facility.id == LedgerEntry.facility_id)
        .join(Item, Item.id == LedgerEntry.item_id)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
        .outerjoin(other, other.id == LedgerEntry.counterparty_facility_id)
        .where(LedgerEntry.kind.in_([k for k in q.kinds if k in LEDGER_KINDS]))
        .order_by(LedgerEntry.facility_id, LedgerEntry.chain_seq)   # the chain's index: read in order, no sort
    )
    if q.facility_code:
        stmt = stmt.where(Facility.code == q.facility_code)
    if q.occurred_since is not None:
        stmt = stmt.where(LedgerEntry.occurred_at >= q.occurred_since)
    if q.occurred_until is not None:
        stmt = stmt.where(LedgerEntry.occurred_at < q.occurred_until)
    if q.since is not None or q.until is not None:
        stmt = stmt.where(LedgerEntry.id.in_(_in_window(q)))
    return stmt


def _recorded(table, q: Query):
    conds = []
    if q.since is not None:
        conds.append(table.recorded_at >= q.since)
    if q.until is not None:
        conds.append(table.recorded_at < q.until)
    return and_(*conds)


def _in_window(q: Query):
    """Ids of the entries recorded in the window, and of those recorded before it whose state an
    entry recorded in it changed (reversed, or a transfer sent now received). A union of three
    selects, each starting from ``ix_ledger_entry_recorded_at``, rather than one OR the planner
    can answer only by reading the whole ledger."""
    later, earlier = aliased(LedgerEntry), aliased(LedgerEntry)
    recorded = select(later.id).where(_recorded(later, q))
    reversed_now = (select(earlier.id).join(later, later.reverses == earlier.entry_id)
                    .where(later.reverses.is_not(None), _recorded(later, q)))
    # By waybill first: the waybills received in the window, then the transfers sent under them.
    waybills = select(later.document_number).where(later.kind == "transfer_in", _recorded(later, q))
    receipt = aliased(LedgerEntry)
    received_now = select(earlier.id).where(
        earlier.kind == "transfer_out", earlier.document_number.in_(waybills),
        exists().where(receipt.kind == "transfer_in", receipt.facility_id == earlier.counterparty_facility_id,
                       receipt.counterparty_facility_id == earlier.facility_id,
                       receipt.document_number == earlier.document_number, _recorded(receipt, q)))
    return union(recorded, reversed_now, received_now)


def reports_stmt(q: Query):
    stmt = (select(StockReport.period, StockReport.revision, StockReport.opening, StockReport.received,
                   StockReport.consumed, StockReport.adjustment, StockReport.closing, StockReport.stockout_days,
                   StockReport.ordered, StockReport.imported_at, Facility.code.label("facility_code"),
                   Facility.name.label("facility_name"), Item.code.label("item_code"), Item.name.label("item_name"),
                   Item.unit, Item.atc_code.label("atc"), Item.gtin)
            .join(Facility, Facility.id == StockReport.facility_id).join(Item, Item.id == StockReport.item_id)
            .order_by(Facility.code, StockReport.period, Item.code, StockReport.revision))
    if q.facility_code:
        stmt = stmt.where(Facility.code == q.facility_code)
    if q.since is not None:
        stmt = stmt.where(StockReport.imported_at >= q.since)
    if q.until is not None:
        stmt = stmt.where(StockReport.imported_at < q.until)
    if q.occurred_since is not None:
        stmt = stmt.where(StockReport.period >= q.occurred_since.strftime("%Y-%m"))
    if q.occurred_until is not None:
        stmt = stmt.where(StockReport.period < q.occurred_until.strftime("%Y-%m"))
    return stmt


def records(result) -> Iterator[tuple]:
    """A result's rows as plain named tuples (see ``batches``)."""
    return map(namedtuple("Record", list(result.keys()))._make, result)


def _stored(column, label: str):
    """A time column as the driver returns it (see ``instant_text``)."""
    return type_coerce(column, String).label(label)


def instant_text(dialect):
    """The FHIR instant (``fhir_resources.time``) of a time column's value as the driver returns it.

    SQLite returns the stored text, ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, which is rewritten as
    the instant directly; anything else (a timestamp from PostgreSQL, text in another form) goes
    through the column type's own conversion first. An export writes two times per movement, and
    building a datetime for each only to print it again was a tenth of its time."""
    process = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)

    def text(value) -> str:
        if type(value) is str and len(value) == 26 and value[10] == " " and value[19] == ".":
            fraction = value[19:]
            return f"{value[:10]}T{value[11:19]}{'' if fraction == '.000000' else fraction}Z"
        return fr.time(process(value) if process else value)
    return text


def batches(session: Session, stmt, times: tuple[str, ...] = ()) -> Iterator[list]:
    """Rows of ``stmt`` in lists of BATCH, from a server-side cursor on PostgreSQL; the columns
    named in ``times`` (selected with ``_stored``) as FHIR instants."""
    # Options on the statement, not the connection: on the connection they would stay, and the
    # session's later writes on PostgreSQL would go through a server-side cursor too.
    result = session.connection().execute(stmt.execution_options(stream_results=True, yield_per=BATCH))
    # Plain named tuples: a resource reads some twenty columns of its row, and a Row's attribute
    # lookup costs ten times a tuple's.
    keys = list(result.keys())
    record = namedtuple("Record", keys)._make
    if not times:
        for part in result.partitions(BATCH):
            yield [record(r) for r in part]
        return
    text = instant_text(session.get_bind().dialect)
    at = [keys.index(name) for name in times]
    for part in result.partitions(BATCH):
        out = []
        for r in part:
            r = list(r)
            for i in at:
                r[i] = text(r[i])
            out.append(record(r))
        yield out


def prescriptions_stmt(codes: list[str]):
    """The prescriptions ``codes`` with their patient, item and facility, for MedicationRequests."""
    return (select(Prescription.code, Prescription.prescriber,
                   type_coerce(Prescription.quantity, BigInteger).label("quantity"),   # thousandths
                   Prescription.days_supply,
                   Prescription.issued_on, Prescription.diagnosis_code, Patient.health_card_id,
                   Item.code.label("item"), Item.name, Item.unit, Item.atc_code, Item.gtin,
                   Facility.code.label("fcode"), Facility.name.label("fname"))
            .join(Patient, Patient.id == Prescription.patient_id)
            .join(Item, Item.id == Prescription.item_id)
            .join(Facility, Facility.id == Prescription.facility_id)
            .where(Prescription.code.in_(codes)))
