"""FHIR (JSON) exchange: the ledger as FHIR resources out, MedicationDispense bundles in.

Versions: R4 (4.0.1) and R5 (5.0.0), chosen by the caller (``version="R4"`` or ``"R5"``; the command
line's ``--version``). The two differ where FHIR itself changed:

- MedicationDispense and MedicationRequest name the medicine by ``medicationReference`` /
  ``medicationCodeableConcept`` in R4 and by the CodeableReference ``medication`` in R5;
- SupplyDelivery has one ``suppliedItem`` in R4 and a list of them in R5;
- a physical count is an InventoryReport, which exists only in R5. R4 has no resource for it, so an
  R4 export leaves counts out and says how many it left out (``FhirExport.skipped``).

What goes out (a Bundle of type ``collection``):

- ``dispense`` → MedicationDispense, status ``completed`` (``entered-in-error`` when a later entry
  reversed it), its prescription as a MedicationRequest entry of the same bundle that
  ``authorizingPrescription`` references by ``fullUrl`` and by identifier;
- ``receipt`` and ``transfer_in`` → SupplyDelivery ``completed``; ``transfer_out`` → SupplyDelivery
  ``in-progress`` (dispatched, not yet received); both legs of a transfer carry the waybill
  (document_number) as a second identifier;
- ``count`` → InventoryReport (R5), the book quantity and variance in its note.

Every resource carries the ledger's entry_id as an identifier, the medicine as a contained Medication
(item code, ATC code, lot and expiry in ``batch``), the facility as a Location identifier and the
patient as a Patient identifier holding the health card id. The identifier systems come from
settings (``DAWA_FHIR__PATIENT_SYSTEM`` and the others in ``stock.settings.Fhir``).

What comes in: MedicationDispense resources of a Bundle, R4 or R5 shape, recorded as dispensing
through ``stock.ledger.post``. The entry_id is the resource's Dawa entry identifier when it has one
(a bundle exported by Dawa), otherwise ``fhir-`` and the resource id, so importing the same bundle
again adds nothing. Import is all or nothing: every problem names the bundle entry index, the
resource id, the field path and what is wrong, and the caller rolls back.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from stock.errors import DawaError
from stock.ledger import NewEntry, post
from stock.models import Facility, Item, LedgerEntry, Lot, Patient, Prescription
from stock.settings import Fhir, get_settings

VERSIONS = {"R4": "4.0.1", "R5": "5.0.0"}
EXPORTED_KINDS = ("dispense", "receipt", "transfer_in", "transfer_out", "count")
ATC_SYSTEM = "http://www.whocc.no/atc"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
SUPPLY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/supply-item-type"
UCUM = "http://unitsofmeasure.org"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NS = uuid.UUID("6f1d3c52-3b8e-4f0a-9d55-0a3c2f9e7d11")
MED = "med"


# ---------------------------------------------------------------------------------------------
# Export


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


def resource_id(entry_id: str) -> str:
    """The entry_id itself when it is a valid FHIR id, otherwise a stable UUID derived from it."""
    return entry_id if FHIR_ID.fullmatch(entry_id) else str(uuid.uuid5(_NS, entry_id))


def _full_url(kind: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{kind}/{key}')}"


def _number(q: Decimal) -> float | int:
    """A JSON number; quantities have at most three decimals, which a float carries exactly enough
    for ``Decimal(str(value))`` to give them back."""
    return int(q) if q == q.to_integral_value() else float(q)


def _time(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _ident(system: str, value: str) -> dict:
    return {"system": system, "value": value}


def _location(sys: Fhir, code: str, name: str | None) -> dict:
    ref = {"type": "Location", "identifier": _ident(sys.facility_system, code)}
    if name:
        ref["display"] = name
    return ref


def _medication(sys: Fhir, item_code: str, item_name: str, atc: str | None, lot: str,
                expiry: date | None) -> dict:
    coding = [{"system": sys.item_system, "code": item_code, "display": item_name}]
    if atc:
        coding.append({"system": ATC_SYSTEM, "code": atc})
    med = {"resourceType": "Medication", "id": MED, "code": {"coding": coding, "text": item_name}}
    if lot:
        batch = {"lotNumber": lot}
        if expiry:
            batch["expirationDate"] = expiry.isoformat()
        med["batch"] = batch
    return med


def _concept(sys: Fhir, item_code: str, item_name: str, atc: str | None) -> dict:
    coding = [{"system": sys.item_system, "code": item_code, "display": item_name}]
    if atc:
        coding.append({"system": ATC_SYSTEM, "code": atc})
    return {"coding": coding, "text": item_name}


def _quantity(q: Decimal, unit: str) -> dict:
    return {"value": _number(q), "unit": unit}


@dataclass
class _Row:
    entry: LedgerEntry
    facility_code: str
    facility_name: str
    item_code: str
    item_name: str
    unit: str
    atc: str | None
    lot: str
    expiry: date | None
    card: str | None
    counterparty_name: str | None


def _rows(session: Session, *, facility_code: str | None, since: datetime | None,
          until: datetime | None, kinds: tuple[str, ...]) -> list[_Row]:
    other = aliased(Facility)
    stmt = (
        select(LedgerEntry, Facility.code, Facility.name, Item.code, Item.name, Item.unit, Item.atc_code,
               Lot.lot_number, Lot.expiry_date, Patient.health_card_id, other.name)
        .join(Facility, Facility.id == LedgerEntry.facility_id)
        .join(Item, Item.id == LedgerEntry.item_id)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
        .outerjoin(other, other.id == LedgerEntry.counterparty_facility_id)
        .where(LedgerEntry.kind.in_(kinds))
        .order_by(Facility.code, LedgerEntry.chain_seq)
    )
    if facility_code:
        stmt = stmt.where(Facility.code == facility_code)
    if since is not None:
        stmt = stmt.where(LedgerEntry.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(LedgerEntry.occurred_at < until)
    return [_Row(*r) for r in session.execute(stmt)]


def export_bundle(session: Session, *, version: str = "R4", facility_code: str | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  kinds: tuple[str, ...] | list[str] | None = None,
                  now: datetime | None = None) -> FhirExport:
    """The ledger's dispensing, deliveries and counts (``kinds``, default all five) at one facility
    or all, with ``since <= occurred_at < until``, as a FHIR Bundle of type collection."""
    version = _check_version(version)
    if facility_code:
        from stock.masterdata import facility_by_code

        facility_by_code(session, facility_code)
    kinds = tuple(kinds or EXPORTED_KINDS)
    bad = [k for k in kinds if k not in EXPORTED_KINDS]
    if bad:
        raise DawaError(f"cannot export {', '.join(bad)} as FHIR: choose from {', '.join(EXPORTED_KINDS)}",
                        field="kinds")
    sys = get_settings().fhir
    now = now or datetime.now(timezone.utc)
    rows = _rows(session, facility_code=facility_code, since=since, until=until, kinds=kinds)
    reversed_by = dict(session.execute(
        select(LedgerEntry.reverses, LedgerEntry.entry_id).where(LedgerEntry.reverses.is_not(None))).all())
    result = FhirExport(bundle={})
    entries: list[dict] = []
    rx_codes = sorted({r.entry.prescription_ref for r in rows
                       if r.entry.kind == "dispense" and r.entry.prescription_ref})
    rx_urls = _prescriptions(session, sys, version, rx_codes, entries)
    skipped_counts = 0
    for r in rows:
        kind = r.entry.kind
        if kind == "dispense":
            res = _dispense(sys, version, r, rx_urls, reversed_by.get(r.entry.entry_id))
        elif kind == "count":
            if version == "R4":
                skipped_counts += 1
                continue
            res = _inventory_report(sys, r)
        else:
            res = _supply_delivery(sys, version, r)
        entries.append({"fullUrl": _full_url(res["resourceType"], r.entry.entry_id), "resource": res})
    for e in entries:
        t = e["resource"]["resourceType"]
        result.counts[t] = result.counts.get(t, 0) + 1
    if skipped_counts:
        result.skipped.append(
            f"{skipped_counts} physical count(s) left out: InventoryReport exists only in FHIR R5 "
            "(export with --version R5 to include them)")
    result.bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _time(now)},
        "type": "collection",
        "timestamp": _time(now),
        "entry": entries,
    }
    return result


def _prescriptions(session: Session, sys: Fhir, version: str, codes: list[str],
                   entries: list[dict]) -> dict[str, str]:
    """A MedicationRequest entry for each stored prescription the dispensing fills; its fullUrl."""
    urls: dict[str, str] = {}
    for start in range(0, len(codes), 500):
        chunk = codes[start:start + 500]
        stmt = (select(Prescription, Patient.health_card_id, Item.code, Item.name, Item.unit, Item.atc_code,
                       Facility.code, Facility.name)
                .join(Patient, Patient.id == Prescription.patient_id)
                .join(Item, Item.id == Prescription.item_id)
                .join(Facility, Facility.id == Prescription.facility_id)
                .where(Prescription.code.in_(chunk)).order_by(Prescription.code))
        for rx, card, icode, iname, unit, atc, fcode, fname in session.execute(stmt):
            concept = _concept(sys, icode, iname, atc)
            res = {
                "resourceType": "MedicationRequest",
                "id": resource_id(rx.code),
                "identifier": [_ident(sys.prescription_system, rx.code)],
                "status": "unknown",
                "intent": "order",
                "subject": {"type": "Patient", "identifier": _ident(sys.patient_system, card)},
                "authoredOn": rx.issued_on.isoformat(),
                "requester": {"type": "Practitioner", "identifier": _ident(sys.user_system, rx.prescriber),
                              "display": rx.prescriber},
                "dispenseRequest": {
                    "quantity": _quantity(rx.quantity, unit),
                    "expectedSupplyDuration": {"value": rx.days_supply, "unit": "days", "system": UCUM,
                                               "code": "d"},
                },
                "note": [{"text": f"written at {fcode} ({fname})"}],
            }
            diagnosis = {"coding": [{"system": ICD10_SYSTEM, "code": rx.diagnosis_code}]} if rx.diagnosis_code else None
            if version == "R4":
                res["medicationCodeableConcept"] = concept
                if diagnosis:
                    res["reasonCode"] = [diagnosis]
            else:
                res["medication"] = {"concept": concept}
                if diagnosis:
                    res["reason"] = [{"concept": diagnosis}]
            url = _full_url("MedicationRequest", rx.code)
            urls[rx.code] = url
            entries.append({"fullUrl": url, "resource": res})
    return urls


def _identifiers(sys: Fhir, e: LedgerEntry) -> list[dict]:
    out = [_ident(sys.entry_system, e.entry_id)]
    if e.document_number:
        out.append({"type": {"text": "document number"}, "value": e.document_number})
    return out


def _dispense(sys: Fhir, version: str, r: _Row, rx_urls: dict[str, str], reversed_by: str | None) -> dict:
    e = r.entry
    res = {
        "resourceType": "MedicationDispense",
        "id": resource_id(e.entry_id),
        "identifier": _identifiers(sys, e),
        "contained": [_medication(sys, r.item_code, r.item_name, r.atc, r.lot, r.expiry)],
        "status": "entered-in-error" if reversed_by else "completed",
    }
    ref = {"reference": f"#{MED}", "display": r.item_name}
    if version == "R4":
        res["medicationReference"] = ref
    else:
        res["medication"] = {"reference": ref}
    res["subject"] = {"type": "Patient", "identifier": _ident(sys.patient_system, r.card)}
    res["performer"] = [{"actor": {"type": "Practitioner", "identifier": _ident(sys.user_system, e.recorded_by),
                                   "display": e.recorded_by}}]
    res["location"] = _location(sys, r.facility_code, r.facility_name)
    if e.prescription_ref:
        rx = {"type": "MedicationRequest", "identifier": _ident(sys.prescription_system, e.prescription_ref)}
        if e.prescription_ref in rx_urls:
            rx["reference"] = rx_urls[e.prescription_ref]
        res["authorizingPrescription"] = [rx]
    res["quantity"] = _quantity(e.quantity, r.unit)
    if version == "R5":
        res["recorded"] = _time(e.recorded_at)
    res["whenHandedOver"] = _time(e.occurred_at)
    if reversed_by:
        res["note"] = [{"text": f"reversed by ledger entry {reversed_by}"}]
    return res


def _supply_delivery(sys: Fhir, version: str, r: _Row) -> dict:
    e = r.entry
    here = _location(sys, r.facility_code, r.facility_name)
    here_org = {"type": "Organization", "identifier": here["identifier"], "display": r.facility_name}
    if e.counterparty_facility_id is not None:
        there = {"identifier": _ident(sys.facility_system, e.counterparty)}
        if r.counterparty_name:
            there["display"] = r.counterparty_name
    else:
        there = {"display": e.counterparty} if e.counterparty else None
    if e.kind == "transfer_out":
        supplier, destination = here_org, ({**there, "type": "Location"} if there else None)
    else:
        supplier = {**there, "type": "Organization"} if there and "identifier" in there else there
        destination = here
    item = {"quantity": _quantity(e.quantity, r.unit), "itemReference": {"reference": f"#{MED}",
                                                                          "display": r.item_name}}
    res = {
        "resourceType": "SupplyDelivery",
        "id": resource_id(e.entry_id),
        "identifier": _identifiers(sys, e),
        "contained": [_medication(sys, r.item_code, r.item_name, r.atc, r.lot, r.expiry)],
        "status": "in-progress" if e.kind == "transfer_out" else "completed",
        "type": {"coding": [{"system": SUPPLY_TYPE_SYSTEM, "code": "medication"}]},
        "suppliedItem": item if version == "R4" else [item],
        "occurrenceDateTime": _time(e.occurred_at),
    }
    if supplier:
        res["supplier"] = supplier
    if destination:
        res["destination"] = destination
    return res


def _inventory_report(sys: Fhir, r: _Row) -> dict:
    e = r.entry
    variance = e.quantity - (e.book_quantity or Decimal(0))
    return {
        "resourceType": "InventoryReport",
        "id": resource_id(e.entry_id),
        "identifier": _identifiers(sys, e),
        "contained": [_medication(sys, r.item_code, r.item_name, r.atc, r.lot, r.expiry)],
        "status": "active",
        "countType": "snapshot",
        "reportedDateTime": _time(e.recorded_at),
        "reporter": {"type": "Practitioner", "identifier": _ident(sys.user_system, e.recorded_by),
                     "display": e.recorded_by},
        "inventoryListing": [{
            "location": _location(sys, r.facility_code, r.facility_name),
            "countingDateTime": _time(e.occurred_at),
            "item": [{"quantity": _quantity(e.quantity, r.unit),
                      "item": {"reference": {"reference": f"#{MED}", "display": r.item_name}}}],
        }],
        "note": [{"text": f"book quantity {_number(e.book_quantity or Decimal(0))} {r.unit}; "
                          f"counted minus book {_number(variance)}"}],
    }


from web.interop.fhir_import import (FhirImportFailed, FhirImportReport, Problem,  # noqa: E402 - the import half
                                    import_bundle)

__all__ = ["export_bundle", "import_bundle", "FhirExport", "FhirImportReport", "FhirImportFailed", "Problem",
           "VERSIONS", "EXPORTED_KINDS", "resource_id"]
