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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from stock.errors import DawaError
from stock.ledger import NewEntry, lock_chains, post
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


# ---------------------------------------------------------------------------------------------
# Import


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle, where a person can find it."""

    index: int | None
    resource_id: str | None
    path: str
    message: str

    def __str__(self) -> str:
        where = "bundle" if self.index is None else f"entry[{self.index}]"
        if self.resource_id:
            where += f" (id {self.resource_id})"
        return f"{where}: {self.path}: {self.message}"


class FhirImportFailed(DawaError):
    """The bundle cannot be recorded; nothing of it may be stored (the caller rolls back)."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s) in the bundle; nothing was imported")
        self.problems = problems


@dataclass
class FhirImportReport:
    dispenses: int = 0
    added: int = 0
    already_present: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)


DISPENSE_STATUSES = ("preparation", "in-progress", "cancelled", "on-hold", "completed", "entered-in-error",
                     "stopped", "declined", "unknown")

# Where each NewEntry field comes from in a MedicationDispense, for errors from the ledger.
_PATHS = {"entry_id": "id", "facility_code": "location", "item_code": "medication",
          "lot_number": "medication.batch.lotNumber", "expiry_date": "medication.batch.expirationDate",
          "quantity": "quantity.value", "occurred_at": "whenHandedOver", "health_card_id": "subject",
          "prescription_id": "authorizingPrescription", "recorded_by": "performer"}


class _Bad(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


def _load(data: bytes | str | dict) -> dict:
    if isinstance(data, dict):
        return data
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirImportFailed([Problem(None, None, "(json)", f"not valid JSON: {exc}")]) from exc


def _entry_id_for(res: dict, sys: Fhir) -> str:
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == sys.entry_system and ident.get("value"):
            return str(ident["value"])
    rid = res.get("id")
    if not isinstance(rid, str) or not rid:
        raise _Bad("id", "the resource needs an id (or a Dawa entry identifier) to be imported idempotently")
    if len(rid) <= 59:
        return f"fhir-{rid}"
    return "fhir-" + hashlib.sha256(rid.encode()).hexdigest()[:40]


def _identifier_value(ref, system: str, path: str, what: str, resolve) -> str:
    """The value of ``ref``'s identifier in ``system``, looking through a resolvable reference."""
    if not isinstance(ref, dict):
        raise _Bad(path, f"must be a Reference naming the {what}")
    ident = ref.get("identifier")
    if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
        return str(ident["value"])
    target = resolve(ref.get("reference"))
    if target is not None:
        for i in target.get("identifier") or []:
            if isinstance(i, dict) and i.get("system") == system and i.get("value"):
                return str(i["value"])
    raise _Bad(f"{path}.identifier", f"no identifier with system {system} naming the {what}")


def _medication_of(res: dict, sys: Fhir, resolve) -> tuple[str, str, date | None, str]:
    """Item code, lot number, expiry and the path the medicine was read from."""
    if "medicationCodeableConcept" in res:
        return _item_code(res["medicationCodeableConcept"], sys, "medicationCodeableConcept"), "", None, \
            "medicationCodeableConcept"
    if "medicationReference" in res:
        path, ref = "medicationReference", res["medicationReference"]
    elif isinstance(res.get("medication"), dict):
        med = res["medication"]
        if "concept" in med:
            return _item_code(med["concept"], sys, "medication.concept"), "", None, "medication.concept"
        path, ref = "medication.reference", med.get("reference")
    else:
        raise _Bad("medication", "no medication (medicationReference, medicationCodeableConcept or medication)")
    if not isinstance(ref, dict):
        raise _Bad(path, "must be a Reference to a Medication")
    med = resolve(ref.get("reference"))
    if med is None or med.get("resourceType") != "Medication":
        raise _Bad(f"{path}.reference", f"{ref.get('reference')!r} names no Medication contained or in the bundle")
    code = _item_code(med.get("code"), sys, f"{path}(Medication).code")
    batch = med.get("batch") or {}
    lot = batch.get("lotNumber") or ""
    expiry = None
    if batch.get("expirationDate"):
        text = str(batch["expirationDate"])
        try:
            expiry = date.fromisoformat(text[:10])
        except ValueError:
            raise _Bad(f"{path}(Medication).batch.expirationDate", f"{text!r} is not a date") from None
    if not isinstance(lot, str):
        raise _Bad(f"{path}(Medication).batch.lotNumber", "must be a string")
    return code, lot, expiry, path


def _item_code(concept, sys: Fhir, path: str) -> str:
    if not isinstance(concept, dict):
        raise _Bad(path, "must be a CodeableConcept")
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == sys.item_system and coding.get("code"):
            return str(coding["code"])
    raise _Bad(f"{path}.coding", f"no coding with system {sys.item_system} giving the item code")


def _timestamp(text, path: str) -> datetime:
    if not isinstance(text, str) or not text:
        raise _Bad(path, "is required: when the medicine was handed over")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(path, f"{text!r} is not a FHIR dateTime") from None
    if t.tzinfo is None or "T" not in text:
        raise _Bad(path, f"{text!r} must be a time with a zone offset, not a date or a local time")
    return t


def _quantity_of(res: dict, units: dict[str, str], item_code: str) -> Decimal:
    q = res.get("quantity")
    if not isinstance(q, dict) or q.get("value") is None:
        raise _Bad("quantity.value", "is required")
    try:
        value = Decimal(str(q["value"]))
    except InvalidOperation:
        raise _Bad("quantity.value", f"{q['value']!r} is not a number") from None
    if isinstance(q["value"], (str, bool)) or not value.is_finite():
        raise _Bad("quantity.value", f"{q['value']!r} is not a number")
    if value <= 0:
        raise _Bad("quantity.value", f"must be greater than zero ({value})")
    unit = q.get("unit")
    if unit and item_code in units and unit != units[item_code]:
        raise _Bad("quantity.unit", f"{unit!r} is not the base unit of {item_code} ({units[item_code]!r}); "
                                    "quantities are counted in base units")
    return value


def _parse_dispense(res: dict, sys: Fhir, resolve, default_recorded_by: str,
                    units: dict[str, str], facilities: set[str]) -> NewEntry | str:
    """The NewEntry a completed MedicationDispense states, or the reason it is not recorded."""
    entry_id = _entry_id_for(res, sys)
    status = res.get("status")
    if status not in DISPENSE_STATUSES:
        raise _Bad("status", f"{status!r} is not a MedicationDispense status ({', '.join(DISPENSE_STATUSES)})")
    if status != "completed":
        return f"status {status}: only completed dispensing is recorded"
    item_code, lot, expiry, _path = _medication_of(res, sys, resolve)
    if item_code not in units:
        raise _Bad("medication", f"unknown item {item_code!r}")
    card = _identifier_value(res.get("subject"), sys.patient_system, "subject", "patient's health card", resolve)
    occurred = _timestamp(res.get("whenHandedOver"), "whenHandedOver")
    quantity = _quantity_of(res, units, item_code)
    location = res.get("location")
    if location is None:
        raise _Bad("location", "is required: the facility that dispensed")
    facility = _identifier_value(location, sys.facility_system, "location", "facility", resolve)
    if facility not in facilities:
        raise _Bad("location.identifier", f"unknown facility {facility!r}")
    rx = None
    prescriptions = res.get("authorizingPrescription") or []
    if not isinstance(prescriptions, list):
        raise _Bad("authorizingPrescription", "must be a list of References")
    if len(prescriptions) > 1:
        raise _Bad("authorizingPrescription", f"names {len(prescriptions)} prescriptions; a dispensing fills one")
    if prescriptions:
        rx = _identifier_value(prescriptions[0], sys.prescription_system, "authorizingPrescription[0]",
                               "prescription", resolve)
    recorded_by = default_recorded_by
    performers = res.get("performer") or []
    if performers and isinstance(performers, list) and isinstance(performers[0], dict):
        actor = performers[0].get("actor") or {}
        ident = actor.get("identifier") if isinstance(actor, dict) else None
        if isinstance(ident, dict) and ident.get("system") == sys.user_system and ident.get("value"):
            recorded_by = str(ident["value"])
    return NewEntry(entry_id=entry_id, kind="dispense", facility_code=facility, item_code=item_code,
                    quantity=quantity, occurred_at=occurred, recorded_by=recorded_by, lot_number=lot,
                    expiry_date=expiry, health_card_id=card, prescription_id=rx)


class FacilitiesRefused(Exception):
    """The bundle records at facilities the caller may not record at (``codes``); nothing was read
    of them and nothing was stored."""

    def __init__(self, codes: list[str]):
        super().__init__(", ".join(codes))
        self.codes = codes


def import_bundle(session: Session, data: bytes | str | dict, *,
                  default_recorded_by: str = "fhir-import", now: datetime | None = None,
                  allowed: Callable[[str], bool] | None = None) -> FhirImportReport:
    """Record a Bundle's completed MedicationDispense resources as dispensing, in occurred order.
    ``allowed`` (a facility code -> may the caller record there) is asked before anything is posted:
    FacilitiesRefused if any is not, so no stock of such a facility is read.

    Raises FhirImportFailed listing every problem; the caller then rolls back, so nothing is stored.
    Other resource types are not imported and are listed in ``skipped`` (MedicationRequest and
    Medication entries are read where a dispense references them).
    """
    bundle = _load(data)
    sys = get_settings().fhir
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirImportFailed([Problem(None, None, "resourceType", "must be Bundle")])
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirImportFailed([Problem(None, None, "entry", "must be a list")])

    by_url: dict[str, dict] = {}
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("resource"), dict):
            r = e["resource"]
            if e.get("fullUrl"):
                by_url[e["fullUrl"]] = r
            if r.get("resourceType") and r.get("id"):
                by_url[f"{r['resourceType']}/{r['id']}"] = r
    units = dict(session.execute(select(Item.code, Item.unit)).all())
    facilities = set(session.scalars(select(Facility.code)))

    report = FhirImportReport()
    problems: list[Problem] = []
    parsed: list[tuple[int, str | None, NewEntry]] = []
    seen: dict[str, int] = {}
    other: dict[str, int] = {}
    for index, e in enumerate(entries):
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict):
            problems.append(Problem(index, None, "resource", "missing: every entry must hold a resource"))
            continue
        rid = res.get("id") if isinstance(res.get("id"), str) and res.get("id") else None
        rtype = res.get("resourceType")
        if rtype != "MedicationDispense":
            if rtype not in ("MedicationRequest", "Medication", "Patient", "Location"):
                other[str(rtype)] = other.get(str(rtype), 0) + 1
            continue
        report.dispenses += 1
        contained = {f"#{c.get('id')}": c for c in res.get("contained") or [] if isinstance(c, dict)}

        def resolve(ref, contained=contained):
            if not isinstance(ref, str):
                return None
            return contained.get(ref) or by_url.get(ref)

        try:
            new = _parse_dispense(res, sys, resolve, default_recorded_by, units, facilities)
        except _Bad as bad:
            problems.append(Problem(index, rid, bad.path, bad.message))
            continue
        if isinstance(new, str):
            report.skipped.append(f"entry[{index}] (MedicationDispense/{rid}): {new}")
            continue
        if new.entry_id in seen:
            problems.append(Problem(index, rid, "id", f"entry_id {new.entry_id} is also entry[{seen[new.entry_id]}]"))
            continue
        seen[new.entry_id] = index
        parsed.append((index, rid, new))

    for rtype, n in sorted(other.items()):
        report.skipped.append(f"{n} {rtype} entr{'y' if n == 1 else 'ies'} not imported: only MedicationDispense is")
    if allowed is not None:
        refused = sorted({new.facility_code for _i, _r, new in parsed if not allowed(new.facility_code)})
        if refused:
            raise FacilitiesRefused(refused)
    if not problems:
        lock_chains(session, [new.facility_code for _i, _r, new in parsed])  # one order, as every writer
        parsed.sort(key=lambda t: (t[2].occurred_at.astimezone(timezone.utc), t[0]))
        for index, rid, new in parsed:
            try:
                (posted,) = post(session, new, now=now)
            except DawaError as exc:
                problems.append(Problem(index, rid, _PATHS.get(exc.field or "", exc.field or "(entry)"), str(exc)))
                continue
            if posted.created:
                report.added += 1
            else:
                report.already_present += 1
            for note in posted.notes:
                report.notes[note.code] = report.notes.get(note.code, 0) + 1
    if problems:
        raise FhirImportFailed(problems)
    return report


__all__ = ["export_bundle", "import_bundle", "FacilitiesRefused", "FhirExport", "FhirImportReport", "FhirImportFailed", "Problem",
           "VERSIONS", "EXPORTED_KINDS", "resource_id"]
