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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, NamedTuple

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import DawaError
from stock.models import Facility, LedgerEntry
from stock.pseudonyms import patient_key
from stock.settings import Fhir, Settings
from web.interop import fhir_resources as fr
from web.interop.fhir_query import LEDGER_KINDS, Query, batches, ledger_stmt, prescriptions_stmt, records, reports_stmt
from web.interop.fhir_reports import monthly_report, report_key
from web.interop.fhir_requests import medication_request

VERSIONS = {"R4": "4.0.1", "R5": "5.0.0"}
EXPORTED_KINDS = (*LEDGER_KINDS, "stock_report")
PATIENT_IDS = ("pseudonym", "card")
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


class _ItemView(NamedTuple):
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

    def entry(self, res: dict, key: str, url: str | None = None) -> dict:
        t = res["resourceType"]
        self.counts[t] = self.counts.get(t, 0) + 1
        return {"fullUrl": url or fr.full_url(t, key), "resource": res,
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

    def prescriptions(self, codes: set[str], out: list[dict]) -> dict[str, str]:
        """MedicationRequest entries (and their patients) for the prescriptions not yet written;
        returns their fullUrls, which the batch's dispenses name again."""
        new = sorted(codes - self.rxs)
        if not new:
            return {}
        urls: dict[str, str] = {}
        for rx in records(self.session.connection().execute(prescriptions_stmt(new))):
            item = _ItemView(rx.item, rx.name, rx.unit, rx.atc_code, rx.gtin)
            self.rxs.add(rx.code)
            self.patient(rx.health_card_id, out)
            url = urls[rx.code] = fr.full_url("MedicationRequest", rx.code)
            out.append(self.entry(medication_request(self.sys, self.version, rx,
                                                        self.patient_ids.ref(rx.health_card_id), item,
                                                        rx.fcode, rx.fname), rx.code, url))
        return urls

    def rows(self, batch: list) -> list[dict]:
        out: list[dict] = []
        rx_urls = self.prescriptions({r.prescription_ref for r in batch if r.prescription_ref and r.kind == "dispense"},
                                     out)
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
                rx_url = rx_urls.get(rx) or (fr.full_url("MedicationRequest", rx) if rx and rx in self.rxs else None)
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
            out.append(self.entry(monthly_report(self.sys, self.version, r), report_key(r)))
        return out


def _patient_key(patient_ids: str, key: str | None, settings: Settings) -> str | None:
    """The key patients are pseudonymised under (``key``, else the install's), or None for health
    cards in the clear."""
    if patient_ids == "card":
        return None
    if patient_ids != "pseudonym":
        raise DawaError(f"patients are named by {' or '.join(PATIENT_IDS)}, not {patient_ids!r}", field="patient_ids")
    return key or patient_key(settings)


def _prepare(session: Session, *, settings: Settings, version: str = "R4", facility_code: str | None = None, kinds=None,
             patient_ids: str = "pseudonym", patient_key: str | None = None, since: datetime | None = None,
             until: datetime | None = None, occurred_since: datetime | None = None,
             occurred_until: datetime | None = None) -> Query:
    """The export asked for (``iter_entries``' arguments), checked."""
    bounds = {"since": since, "until": until, "occurred_since": occurred_since, "occurred_until": occurred_until}
    version = _check_version(version)
    key = _patient_key(patient_ids, patient_key, settings)
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
    return Query(version, facility_code, kinds=kinds, key=key, **bounds)


def iter_entries(session: Session, result: FhirExport, *, settings: Settings, version: str = "R4",
                 facility_code: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 occurred_since: datetime | None = None, occurred_until: datetime | None = None,
                 kinds=None, patient_ids: str = "pseudonym", patient_key: str | None = None) -> Iterator[dict]:
    """The bundle's entries, streamed; ``result`` gets the counts and what was left out at the end.
    The arguments are checked before the first entry is asked for.

    Patients are named by pseudonym under ``patient_key`` (default: the key of ``settings``, the
    install's), or by health card with ``patient_ids="card"``: the caller decides who may ask for
    that. Identifiers carry the code systems of ``settings.fhir``."""
    q = _prepare(session, settings=settings, version=version, facility_code=facility_code, kinds=kinds,
                 patient_ids=patient_ids, patient_key=patient_key, since=since, until=until, occurred_since=occurred_since,
                 occurred_until=occurred_until)
    return _each(_entries(session, q, result, settings.fhir))


@contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused while a batch's resources are built and written. They are
    plain dicts and lists without cycles (reference counting frees them), but tens of thousands of
    them per batch would set the collector off again and again, each time walking every object the
    export keeps (the patients and prescriptions already written): a third of an export's time.
    Paused per batch only, and left as found, so a process doing other work meanwhile loses
    nothing; resumed only once the batch is freed, so that it finds nothing new to walk."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _each(parts: Iterator[list[dict]]) -> Iterator[dict]:
    """The entries of each list in turn, each list let go before the next is asked for (see
    ``_built``)."""
    for part in parts:
        yield from part
        del part


def _built(rows: Iterator[list], build) -> Iterator[list[dict]]:
    """``build(batch)``'s entries, a list per batch of rows, read, built and used by the caller
    with the collector paused. The caller lets go of each list before asking for the next: the
    collector is resumed only once the batch is freed."""
    while True:
        with _no_cycle_collection():
            batch = next(rows, None)
            if batch is None:
                return
            out = build(batch)
            del batch
            yield out
            del out


def _entries(session: Session, q: Query, result: FhirExport, sys: Fhir) -> Iterator[list[dict]]:
    """The bundle's entries, a list per batch, identified in the code systems ``sys``."""
    w = _Writer(session, sys, q.version, fr.PatientIds(sys, q.key))
    if any(k in LEDGER_KINDS for k in q.kinds):
        yield from _built(batches(session, ledger_stmt(q), times=("occurred", "recorded")), w.rows)
    if "stock_report" in q.kinds:
        yield from _built(batches(session, reports_stmt(q)), w.reports)
    result.counts = dict(sorted(w.counts.items()))
    if w.skipped_counts:
        result.skipped.append(
            f"{w.skipped_counts} physical count(s) left out: InventoryReport exists only in FHIR R5 "
            "(export with --version R5 to include them)")


def _head(now: datetime) -> dict:
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": fr.time(now)},
            "type": "transaction", "timestamp": fr.time(now)}


def export_bundle(session: Session, *, settings: Settings, now: datetime | None = None, **kw) -> FhirExport:
    """The movements (``kinds``, default all) as one transaction Bundle dict; see ``iter_entries``."""
    result = FhirExport(bundle={})
    entries = list(iter_entries(session, result, settings=settings, **kw))
    result.bundle = {**_head(now or datetime.now(timezone.utc)), "entry": entries}
    return result


def write_bundle(session: Session, out: BinaryIO, *, settings: Settings, now: datetime | None = None,
                 **kw) -> FhirExport:
    """The same Bundle written to the binary stream ``out`` (UTF-8 JSON) entry by entry, in
    bounded memory."""
    result = FhirExport(bundle={})
    parts = _entries(session, _prepare(session, settings=settings, **kw), result, settings.fhir)
    head = orjson.dumps(_head(now or datetime.now(timezone.utc)))
    out.write(head[:-1] + b', "entry": [')
    dumps = orjson.dumps
    separator = b"\n"
    for part in parts:
        if part:     # a batch's entries as one write: "\n" before the first entry, ",\n" between
            out.write(separator + b",\n".join(map(dumps, part)))
            separator = b",\n"
        del part
    out.write(b"\n]}\n")
    return result


from web.interop.fhir_import import (FhirImportFailed, FhirImportReport, Problem,  # noqa: E402 - the import half
                                    import_bundle)

__all__ = ["export_bundle", "write_bundle", "iter_entries", "import_bundle", "FhirExport", "FhirImportReport",
           "FhirImportFailed", "Problem", "VERSIONS", "EXPORTED_KINDS", "resource_id"]
