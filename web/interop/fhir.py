"""FHIR (JSON) exchange: the ledger as a FHIR transaction Bundle out, MedicationDispense bundles in.

Versions: R4 (4.0.1) and R5 (5.0.0), chosen by the caller (``version="R4"`` or ``"R5"``; the command
line's ``--version``). The two differ where FHIR itself changed:

- MedicationDispense and MedicationRequest name the medicine by ``medicationReference`` /
  ``medicationCodeableConcept`` in R4 and by the CodeableReference ``medication`` in R5;
- SupplyDelivery has one ``suppliedItem`` in R4 and a list of them in R5, and its ``type`` codes
  come from a different code system in each (both required bindings);
- a physical count is an InventoryReport, which exists only in R5: an R4 export leaves counts out
  and says how many (``FhirExport.skipped``); a monthly stock report is a MeasureReport in R4 and
  an InventoryReport in R5.

What goes out is a Bundle of type ``transaction`` whose every entry is a conditional update
(``PUT MedicationDispense?identifier=urn:dawa:entry|e123``), so a FHIR server loads it, and loads
it again, without duplicates. Besides the movements (resources in ``web.interop.fhir_resources``)
it holds each facility as a Location and an Organization, each patient as a Patient and each
prescription filled as a MedicationRequest, once each, all referenced by ``fullUrl``.

Which movements: ``since``/``until`` bound when they were *recorded* (``recorded_at``), which is
what an incremental "since the last sync" pull needs: a late entry recorded today is in today's
pull. Those pulls also carry again the entries whose state changed in the window: a dispense or
delivery reversed (now ``entered-in-error``) and a transfer sent whose receipt was recorded (now
``completed``). ``occurred_since``/``occurred_until`` bound when the medicine moved instead.

Rows are read in batches from a server-side cursor and written as they come (``write_bundle``), so
an export of any size runs in bounded memory; ``export_bundle`` gathers the same into one dict.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO

import orjson
from sqlalchemy import BigInteger, and_, exists, select, type_coerce, union
from sqlalchemy.orm import Session, aliased

from stock.errors import DawaError
from stock.models import Facility, Item, LedgerEntry, Lot, Patient, Prescription, StockReport
from stock.pseudonyms import patient_key
from stock.settings import Fhir, get_settings
from web.interop import fhir_resources as fr

VERSIONS = {"R4": "4.0.1", "R5": "5.0.0"}
LEDGER_KINDS = ("dispense", "receipt", "transfer_in", "transfer_out", "count")
EXPORTED_KINDS = (*LEDGER_KINDS, "stock_report")
PATIENT_IDS = ("pseudonym", "card")
BATCH = 2000
resource_id = fr.resource_id


@dataclass
class FhirExport:
    bundle: dict
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.bundle, ensure_ascii=False, indent=1) + "\n"


def _check_version(version: str) -> str:
    v = version.upper()
    if v not in VERSIONS:
        raise DawaError(f"FHIR version {version!r} is not supported: choose R4 or R5", field="version")
    return v


@dataclass
class _Query:
    version: str
    facility_code: str | None
    since: datetime | None
    until: datetime | None
    occurred_since: datetime | None
    occurred_until: datetime | None
    kinds: tuple[str, ...]
    key: str | None = None


def _ledger_stmt(q: _Query):
    other = aliased(Facility)
    stmt = (
        select(LedgerEntry.entry_id, LedgerEntry.kind,
               type_coerce(LedgerEntry.quantity, BigInteger).label("quantity"),   # thousandths: fr.milli
               type_coerce(LedgerEntry.book_quantity, BigInteger).label("book_quantity"),
               LedgerEntry.occurred_at, LedgerEntry.recorded_at, LedgerEntry.recorded_by,
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


def _recorded(table, q: _Query):
    conds = []
    if q.since is not None:
        conds.append(table.recorded_at >= q.since)
    if q.until is not None:
        conds.append(table.recorded_at < q.until)
    return and_(*conds)


def _in_window(q: _Query):
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


@dataclass(frozen=True)
class _ItemView:
    code: str
    name: str
    unit: str
    atc_code: str | None
    gtin: str | None


class _Writer:
    """Turns rows into bundle entries, adding each facility, patient and prescription the first
    time a movement names it."""

    def __init__(self, session: Session, sys: Fhir, version: str, patient_ids: fr.PatientIds):
        self.session, self.sys, self.version, self.patient_ids = session, sys, version, patient_ids
        self.facilities = {code: (name, region) for code, name, region in
                           session.execute(select(Facility.code, Facility.name, Facility.region))}
        self.reversed_by = dict(session.execute(
            select(LedgerEntry.reverses, LedgerEntry.entry_id).where(LedgerEntry.reverses.is_not(None))).all())
        # Waybills received, as (receiving facility, sending facility, waybill): a transfer sent is
        # completed once its receipt is recorded. Read once (through the partial index on
        # document_number) rather than asked per transfer, which SQLite answers by reading the
        # receiving facility's whole chain.
        self.received = {tuple(row) for row in session.execute(
            select(LedgerEntry.facility_id, LedgerEntry.counterparty_facility_id, LedgerEntry.document_number)
            .where(LedgerEntry.document_number.is_not(None), LedgerEntry.kind == "transfer_in",
                   LedgerEntry.counterparty_facility_id.is_not(None)))}
        self.places: set[str] = set()      # facilities, patients and prescriptions already written
        self.people: set[str] = set()
        self.rxs: set[str] = set()
        self.counts: dict[str, int] = {}
        self.skipped_counts = 0

    def entry(self, res: dict, key: str) -> dict:
        t = res["resourceType"]
        self.counts[t] = self.counts.get(t, 0) + 1
        return {"fullUrl": fr.full_url(t, key), "resource": res,
                "request": fr.conditional(t, res["identifier"][0])}

    def facility(self, code: str | None, out: list[dict]) -> None:
        if code and code not in self.places and code in self.facilities:
            self.places.add(code)
            name, region = self.facilities[code]
            out.append(self.entry(fr.organization(self.sys, code, name), code))
            out.append(self.entry(fr.location(self.sys, code, name, region), code))

    def patient(self, card: str | None, out: list[dict]) -> None:
        if card and card not in self.people:
            self.people.add(card)
            out.append(self.entry(*fr.patient(self.patient_ids, card)))

    def prescriptions(self, codes: set[str], out: list[dict]) -> None:
        """MedicationRequest entries (and their patients) for the prescriptions not yet written."""
        new = sorted(codes - self.rxs)
        if not new:
            return
        stmt = (select(Prescription.code, Prescription.prescriber, Prescription.quantity, Prescription.days_supply,
                       Prescription.issued_on, Prescription.diagnosis_code, Patient.health_card_id, Item.code.label("item"),
                       Item.name, Item.unit, Item.atc_code, Item.gtin, Facility.code.label("fcode"),
                       Facility.name.label("fname"))
                .join(Patient, Patient.id == Prescription.patient_id)
                .join(Item, Item.id == Prescription.item_id)
                .join(Facility, Facility.id == Prescription.facility_id)
                .where(Prescription.code.in_(new)))
        for rx in _records(self.session.connection().execute(stmt)):
            item = _ItemView(rx.item, rx.name, rx.unit, rx.atc_code, rx.gtin)
            self.rxs.add(rx.code)
            self.patient(rx.health_card_id, out)
            out.append(self.entry(fr.medication_request(self.sys, self.version, rx,
                                                        self.patient_ids.ref(rx.health_card_id), item,
                                                        rx.fcode, rx.fname), rx.code))

    def rows(self, batch: list) -> list[dict]:
        out: list[dict] = []
        self.prescriptions({r.prescription_ref for r in batch if r.prescription_ref and r.kind == "dispense"}, out)
        sys, version, reversed_by, places = self.sys, self.version, self.reversed_by, self.places
        patient_ref = self.patient_ids.ref
        for r in batch:
            if r.facility_code not in places:
                self.facility(r.facility_code, out)
            if r.counterparty_code and r.counterparty_code not in places:
                self.facility(r.counterparty_code, out)
            kind = r.kind
            if kind == "dispense":
                if r.card not in self.people:
                    self.patient(r.card, out)
                rx = r.prescription_ref
                rx_url = fr.full_url("MedicationRequest", rx) if rx and rx in self.rxs else None
                res = fr.dispense(sys, version, r, rx_url, reversed_by.get(r.entry_id), patient_ref(r.card))
            elif kind == "count":
                if version == "R4":
                    self.skipped_counts += 1
                    continue
                res = fr.inventory_count(sys, r)
            else:
                received = kind == "transfer_out" and (r.counterparty_facility_id, r.facility_id,
                                                       r.document_number) in self.received
                res = fr.supply_delivery(sys, version, r, reversed_by.get(r.entry_id), received)
            out.append(self.entry(res, r.entry_id))
        return out

    def reports(self, batch: list) -> list[dict]:
        out: list[dict] = []
        for r in batch:
            self.facility(r.facility_code, out)
            out.append(self.entry(fr.monthly_report(self.sys, self.version, r), fr.report_key(r)))
        return out


def _reports_stmt(q: _Query):
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


def _records(result) -> Iterator[tuple]:
    """A result's rows as plain named tuples (see ``_batches``)."""
    return map(namedtuple("Record", list(result.keys()))._make, result)


def _batches(session: Session, stmt) -> Iterator[list]:
    """Rows of ``stmt`` in lists of BATCH, from a server-side cursor on PostgreSQL."""
    # Options on the statement, not the connection: on the connection they would stay, and the
    # session's later writes on PostgreSQL would go through a server-side cursor too.
    result = session.connection().execute(stmt.execution_options(stream_results=True, yield_per=BATCH))
    # Plain named tuples: a resource reads some twenty columns of its row, and a Row's attribute
    # lookup costs ten times a tuple's.
    record = namedtuple("Record", list(result.keys()))._make
    for part in result.partitions(BATCH):
        yield [record(r) for r in part]


def _patient_key(patient_ids: str, key: str | None) -> str | None:
    """The key patients are pseudonymised under, or None for health cards in the clear."""
    if patient_ids == "card":
        return None
    if patient_ids != "pseudonym":
        raise DawaError(f"patients are named by {' or '.join(PATIENT_IDS)}, not {patient_ids!r}", field="patient_ids")
    return key or patient_key(get_settings())


def _prepare(session: Session, version: str, facility_code: str | None, kinds, patient_ids: str,
             key: str | None, **bounds) -> _Query:
    version = _check_version(version)
    key = _patient_key(patient_ids, key)
    if facility_code:
        from stock.masterdata import facility_by_code

        facility_by_code(session, facility_code)
    kinds = tuple(kinds or EXPORTED_KINDS)
    bad = [k for k in kinds if k not in EXPORTED_KINDS]
    if bad:
        raise DawaError(f"cannot export {', '.join(bad)} as FHIR: choose from {', '.join(EXPORTED_KINDS)}",
                        field="kinds")
    for name, value in bounds.items():
        if value is not None and value.tzinfo is None:
            raise DawaError(f"{name} must carry a time zone", field=name)
    return _Query(version, facility_code, kinds=kinds, key=key, **bounds)


def iter_entries(session: Session, result: FhirExport, *, version: str = "R4", facility_code: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 occurred_since: datetime | None = None, occurred_until: datetime | None = None,
                 kinds=None, patient_ids: str = "pseudonym", patient_key: str | None = None) -> Iterator[dict]:
    """The bundle's entries, streamed; ``result`` gets the counts and what was left out at the end.
    The arguments are checked before the first entry is asked for.

    Patients are named by pseudonym under ``patient_key`` (default: the install's key), or by
    health card with ``patient_ids="card"``: the caller decides who may ask for that."""
    q = _prepare(session, version, facility_code, kinds, patient_ids, patient_key, since=since, until=until,
                 occurred_since=occurred_since, occurred_until=occurred_until)
    return _entries(session, q, result)


@contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused while a batch's resources are built. They are plain dicts
    and lists without cycles (reference counting frees them), but tens of thousands of them per
    batch would set the collector off again and again, each time walking every object the export
    keeps (the patients and prescriptions already written): a third of an export's time. Paused
    per batch only, and left as found, so a process doing other work meanwhile loses nothing."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _built(batches: Iterator[list], build) -> Iterator[dict]:
    """``build(batch)``'s entries for each batch, reading and building with the collector paused."""
    while True:
        with _no_cycle_collection():
            batch = next(batches, None)
            if batch is None:
                return
            out = build(batch)
        yield from out


def _entries(session: Session, q: _Query, result: FhirExport) -> Iterator[dict]:
    sys = get_settings().fhir
    w = _Writer(session, sys, q.version, fr.PatientIds(sys, q.key))
    if any(k in LEDGER_KINDS for k in q.kinds):
        yield from _built(_batches(session, _ledger_stmt(q)), w.rows)
    if "stock_report" in q.kinds:
        yield from _built(_batches(session, _reports_stmt(q)), w.reports)
    result.counts = dict(sorted(w.counts.items()))
    if w.skipped_counts:
        result.skipped.append(
            f"{w.skipped_counts} physical count(s) left out: InventoryReport exists only in FHIR R5 "
            "(export with --version R5 to include them)")


def _head(now: datetime) -> dict:
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": fr.time(now)},
            "type": "transaction", "timestamp": fr.time(now)}


def export_bundle(session: Session, *, now: datetime | None = None, **kw) -> FhirExport:
    """The movements (``kinds``, default all) as one transaction Bundle dict; see ``iter_entries``."""
    result = FhirExport(bundle={})
    entries = list(iter_entries(session, result, **kw))
    result.bundle = {**_head(now or datetime.now(timezone.utc)), "entry": entries}
    return result


def write_bundle(session: Session, out: BinaryIO, *, now: datetime | None = None, **kw) -> FhirExport:
    """The same Bundle written to the binary stream ``out`` (UTF-8 JSON) entry by entry, in
    bounded memory."""
    result = FhirExport(bundle={})
    entries = iter_entries(session, result, **kw)
    head = orjson.dumps(_head(now or datetime.now(timezone.utc)))
    out.write(head[:-1] + b', "entry": [')
    dumps = orjson.dumps
    first = True
    for e in entries:
        out.write((b"\n" if first else b",\n") + dumps(e))
        first = False
    out.write(b"\n]}\n")
    return result


from web.interop.fhir_import import (FhirImportFailed, FhirImportReport, Problem,  # noqa: E402 - the import half
                                    import_bundle)

__all__ = ["export_bundle", "write_bundle", "iter_entries", "import_bundle", "FhirExport", "FhirImportReport",
           "FhirImportFailed", "Problem", "VERSIONS", "EXPORTED_KINDS", "resource_id"]
