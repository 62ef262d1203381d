"""The FHIR resources Dawa writes, R4 (4.0.1) or R5 (5.0.0), one function per resource type.

Every resource carries identifiers with a system (``stock.settings.Fhir``), so that a FHIR server
loads a bundle idempotently by conditional update (``PUT Type?identifier=system|value``).
Quantities are UCUM (``web.interop.fhir_codes``). The medicine is a contained Medication coded by
Dawa's item code, the pack's GTIN and the ATC code (only a real ATC code), with its batch (lot and
expiry) and, for a scanned pack, its serial as a GS1 Digital Link identifier.

Patients are identified by pseudonym (``stock.pseudonyms``: a keyed HMAC of the health card,
system ``Fhir.pseudonym_system``): the receiving system can put one patient's dispensing together
but cannot tell who the patient is. The health card itself (system ``Fhir.patient_system``) is
written only when the export is asked for it (``PatientIds`` without a key), which the web app
allows only to the roles ``web.access`` names and audits.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timezone
from functools import lru_cache
from hashlib import sha1
from decimal import Decimal
from urllib.parse import quote

from stock.pseudonyms import pseudonym
from stock.settings import Fhir
from web.interop.fhir_codes import ATC_SYSTEM, GTIN_SYSTEM, UCUM, is_atc, ucum_code

_NS = uuid.UUID("6f1d3c52-3b8e-4f0a-9d55-0a3c2f9e7d11")
MED = "med"
SUPPLY_TYPE = {"R4": "http://terminology.hl7.org/CodeSystem/supply-item-type",
               "R5": "http://hl7.org/fhir/supplydelivery-supplyitemtype"}
"""SupplyDelivery.type's required code system: R4's ValueSet supplydelivery-type and R5's
supplydelivery-supplyitemtype draw ``medication`` from different systems."""
GS1_DIGITAL_LINK = "https://id.gs1.org"


_NS_BYTES = _NS.bytes
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def uid(kind: str, key: str) -> str:
    """``uuid.uuid5(_NS, kind/key)``, computed without building a UUID object (an export makes
    several per resource)."""
    h = sha1(_NS_BYTES + f"{kind}/{key}".encode()).hexdigest()
    # version 5 in the 13th hex digit, variant 10xx in the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def full_url(kind: str, key: str) -> str:
    return f"urn:uuid:{uid(kind, key)}"


def number(q: Decimal | int | float) -> float | int:
    """A JSON number; quantities have at most three decimals, which a float carries exactly enough
    for ``Decimal(str(value))`` to give them back."""
    if not isinstance(q, Decimal):
        return q
    return int(q) if q == q.to_integral_value() else float(q)


def milli(value: int | None) -> int | float | None:
    """A ledger quantity read as the thousandths it is stored in (``stock.quantities``), as a
    JSON number: an export reads millions of them, and a Decimal for each is most of its time."""
    if value is None:
        return None
    return value // 1000 if value % 1000 == 0 else value / 1000


def time(t: datetime) -> str:
    if t.tzinfo is not timezone.utc:
        t = t.astimezone(timezone.utc)
    return t.isoformat().replace("+00:00", "Z")


def ident(system: str, value: str) -> dict:
    return {"system": system, "value": value}


_PLAIN = re.compile(r"[A-Za-z0-9\-._~]*")


def conditional(resource_type: str, identifier: dict) -> dict:
    """A transaction entry's request: update the resource holding this identifier, or create it.
    Search syntax escapes ``\\ | , $`` in the value with a backslash; the URL then quotes it."""
    value = identifier["value"]
    if not _PLAIN.fullmatch(value):
        for ch in ("\\", "|", ",", "$"):
            value = value.replace(ch, "\\" + ch)
        value = quote(value, safe="")
    return {"method": "PUT", "url": f"{resource_type}?identifier={_system(identifier['system'])}|{value}"}


@lru_cache(maxsize=64)
def _system(system: str) -> str:
    return quote(system, safe=":/")


def quantity(q: Decimal, unit: str) -> dict:
    return {"value": number(q), "unit": unit, "system": UCUM, "code": ucum_code(unit)}


@lru_cache(maxsize=8192)
def stored_quantity(value: int, unit: str) -> dict:
    """``quantity`` of a quantity as stored (thousandths, see ``milli``); an export writes the
    same few thousand quantities again and again, so each is one dict, shared (never changed)."""
    return quantity(milli(value), unit)


def concept(sys: Fhir, item_code: str, item_name: str, atc: str | None, gtin: str | None) -> dict:
    return _concept(sys.item_system, item_code, item_name, atc, gtin)


@lru_cache(maxsize=4096)
def _concept(item_system: str, item_code: str, item_name: str, atc: str | None, gtin: str | None) -> dict:
    """The medicine's codes; one dict per item, shared by every resource that names it (never
    changed after), since an export names the same few hundred items millions of times."""
    coding = [{"system": item_system, "code": item_code, "display": item_name}]
    if gtin:
        coding.append({"system": GTIN_SYSTEM, "code": gtin})
    if is_atc(atc):
        coding.append({"system": ATC_SYSTEM, "code": atc})
    return {"coding": coding, "text": item_name}


def medication(sys: Fhir, r, *, serial: str | None = None) -> dict:
    if serial and r.gtin:
        med = dict(_medication(sys.item_system, r.item_code, r.item_name, r.atc, r.gtin, r.lot, r.expiry))
        med["identifier"] = [ident(GS1_DIGITAL_LINK, f"{GS1_DIGITAL_LINK}/01/{r.gtin}/21/{quote(serial, safe='')}")]
        return med
    return _medication(sys.item_system, r.item_code, r.item_name, r.atc, r.gtin, r.lot, r.expiry)


def contained(sys: Fhir, r, *, serial: str | None = None) -> list[dict]:
    """A movement's ``contained``: its Medication, in a list shared like the Medication itself
    unless the pack's serial makes it the movement's own."""
    if serial and r.gtin:
        return [medication(sys, r, serial=serial)]
    return _contained(sys.item_system, r.item_code, r.item_name, r.atc, r.gtin, r.lot, r.expiry)


@lru_cache(maxsize=8192)
def _contained(*key) -> list[dict]:
    return [_medication(*key)]


@lru_cache(maxsize=4096)
def pointer(display: str) -> dict:
    """A reference to the contained Medication (``#med``); shared like ``_concept``."""
    return {"reference": f"#{MED}", "display": display}


@lru_cache(maxsize=8192)
def _medication(item_system: str, item_code: str, item_name: str, atc: str | None, gtin: str | None,
                lot: str, expiry: date | None) -> dict:
    """A contained Medication of one lot; shared like ``_concept``."""
    med = {"resourceType": "Medication", "id": MED, "code": _concept(item_system, item_code, item_name, atc, gtin)}
    if lot:
        batch = {"lotNumber": lot}
        if expiry:
            batch["expirationDate"] = expiry.isoformat()
        med["batch"] = batch
    return med


def ref(resource_type: str, url: str, identifier: dict, display: str | None = None) -> dict:
    out = {"reference": url, "type": resource_type, "identifier": identifier}
    if display:
        out["display"] = display
    return out


# --- the places and the people ---------------------------------------------------------------

def organization(sys: Fhir, code: str, name: str) -> dict:
    return {"resourceType": "Organization", "id": uid("Organization", code),
            "identifier": [ident(sys.facility_system, code)], "active": True, "name": name}


def location(sys: Fhir, code: str, name: str, region: str | None) -> dict:
    res = {"resourceType": "Location", "id": uid("Location", code),
           "identifier": [ident(sys.facility_system, code)], "status": "active", "name": name, "mode": "instance",
           "managingOrganization": ref("Organization", full_url("Organization", code),
                                       ident(sys.facility_system, code), name)}
    if region:
        res["address"] = {"state": region}
    return res


class PatientIds:
    """How an export names patients: by pseudonym under ``key``, or by health card when ``key`` is
    None. The Patient's id and fullUrl derive from that identifier, never from the card behind a
    pseudonym (a UUID of the card could be reversed by trying every card number)."""

    def __init__(self, sys: Fhir, key: str | None):
        self.key = key
        self.system = sys.patient_system if key is None else sys.pseudonym_system
        self.value = (lambda card: card) if key is None else lru_cache(maxsize=1 << 16)(self._pseudonym)
        self._refs: dict[str, dict] = {}

    def _pseudonym(self, card: str) -> str:
        return pseudonym(card, self.key)

    @property
    def pseudonymous(self) -> bool:
        return self.key is not None

    def ref(self, card: str) -> dict:
        """A reference to the card's Patient: one dict per patient (never changed after) for the
        last 32,768 patients named, which a movement and its prescription name again."""
        got = self._refs.get(card)
        if got is None:
            if len(self._refs) >= 1 << 15:
                self._refs.clear()
            got = self._refs[card] = _ref("Patient", self.system, self.value(card), None)
        return got


def patient(ids: PatientIds, card: str) -> tuple[dict, str]:
    """The Patient resource and the key of its fullUrl."""
    value = ids.value(card)
    return {"resourceType": "Patient", "id": uid("Patient", value), "identifier": [ident(ids.system, value)]}, value


def location_ref(sys: Fhir, code: str, name: str | None) -> dict:
    return _ref("Location", sys.facility_system, code, name)


def organization_ref(sys: Fhir, code: str, name: str | None) -> dict:
    return _ref("Organization", sys.facility_system, code, name)


@lru_cache(maxsize=8192)
def _ref(resource_type: str, system: str, value: str, display: str | None) -> dict:
    """A reference by fullUrl and identifier; the same dict is reused (never changed after)."""
    return ref(resource_type, full_url(resource_type, value), ident(system, value), display)


# --- the movements ---------------------------------------------------------------------------

def identifiers(sys: Fhir, r) -> list[dict]:
    out = [ident(sys.entry_system, r.entry_id)]
    if r.document_number:
        out.append({"type": {"text": "document number"}, **ident(sys.document_system, r.document_number)})
    return out


def dispense(sys: Fhir, version: str, r, rx_url: str | None, reversed_by: str | None, subject: dict) -> dict:
    res = {
        "resourceType": "MedicationDispense",
        "id": resource_id(r.entry_id),
        "identifier": identifiers(sys, r),
        "contained": contained(sys, r, serial=r.serial_number),
        "status": "entered-in-error" if reversed_by else "completed",
    }
    if version == "R4":
        res["medicationReference"] = pointer(r.item_name)
    else:
        res["medication"] = _medication_r5(r.item_name)
    res["subject"] = subject
    res["performer"] = _performer(sys.user_system, r.recorded_by)
    res["location"] = location_ref(sys, r.facility_code, r.facility_name)
    if r.prescription_ref:
        rx = {"type": "MedicationRequest", "identifier": ident(sys.prescription_system, r.prescription_ref)}
        if rx_url:
            rx["reference"] = rx_url
        res["authorizingPrescription"] = [rx]
    res["quantity"] = stored_quantity(r.quantity, r.unit)
    if version == "R5":
        res["recorded"] = r.recorded
    res["whenHandedOver"] = r.occurred
    if reversed_by:
        res["note"] = [{"text": f"reversed by ledger entry {reversed_by}"}]
    return res


@lru_cache(maxsize=4096)
def _medication_r5(display: str) -> dict:
    return {"reference": pointer(display)}


@lru_cache(maxsize=1024)
def _performer(user_system: str, user: str) -> list[dict]:
    return [{"actor": {"type": "Practitioner", "identifier": ident(user_system, user), "display": user}}]


def supply_delivery(sys: Fhir, version: str, r, reversed_by: str | None, received: bool = False) -> dict:
    """A receipt, or one leg of a transfer. A transfer sent is ``in-progress`` until its receipt
    (the other facility's transfer_in with the same waybill) is recorded, then ``completed``."""
    here_loc = location_ref(sys, r.facility_code, r.facility_name)
    if r.counterparty_code:
        there_loc = location_ref(sys, r.counterparty_code, r.counterparty_name)
        there_org = organization_ref(sys, r.counterparty_code, r.counterparty_name)
    else:
        there_loc, there_org = None, ({"display": r.counterparty} if r.counterparty else None)
    if r.kind == "transfer_out":
        supplier, destination = organization_ref(sys, r.facility_code, r.facility_name), there_loc
        status = "completed" if received else "in-progress"
    else:
        supplier, destination, status = there_org, here_loc, "completed"
    if reversed_by:
        status = "entered-in-error"
    item = {"quantity": stored_quantity(r.quantity, r.unit), "itemReference": pointer(r.item_name)}
    res = {
        "resourceType": "SupplyDelivery",
        "id": resource_id(r.entry_id),
        "identifier": identifiers(sys, r),
        "contained": contained(sys, r, serial=r.serial_number),
        "status": status,
        "type": _SUPPLY_TYPE[version],
        "suppliedItem": item if version == "R4" else [item],
        "occurrenceDateTime": r.occurred,
    }
    if supplier:
        res["supplier"] = supplier
    if destination:
        res["destination"] = destination
    return res


def inventory_count(sys: Fhir, r) -> dict:
    """A physical count as an R5 InventoryReport: the quantity counted, the book quantity noted."""
    book = milli(r.book_quantity) or 0
    return {
        "resourceType": "InventoryReport",
        "id": resource_id(r.entry_id),
        "identifier": identifiers(sys, r),
        "contained": contained(sys, r),
        "status": "active",
        "countType": "snapshot",
        "reportedDateTime": r.recorded,
        "reporter": _performer(sys.user_system, r.recorded_by)[0]["actor"],
        "inventoryListing": [{
            "location": location_ref(sys, r.facility_code, r.facility_name),
            "countingDateTime": r.occurred,
            "item": [{"quantity": stored_quantity(r.quantity, r.unit), "item": _medication_r5(r.item_name)}],
        }],
        "note": [{"text": f"book quantity {book} {r.unit}; counted minus book {milli(r.quantity - (r.book_quantity or 0))}"}],
    }


_SUPPLY_TYPE = {v: {"coding": [{"system": system, "code": "medication"}]} for v, system in SUPPLY_TYPE.items()}
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def resource_id(entry_id: str) -> str:
    """The entry_id itself when it is a valid FHIR id, otherwise a stable UUID derived from it."""
    return entry_id if _FHIR_ID.fullmatch(entry_id) else str(uuid.uuid5(_NS, entry_id))
