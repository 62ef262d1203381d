"""One MedicationDispense read as the dispensing it states (``stock.ledger.NewEntry``), for
``web.interop.fhir_import``: its Dawa entry id or one derived from the resource id, the facility,
the medicine (item, lot and expiry, ``web.interop.fhir_items``), the patient's card, the quantity in
the item's unit (UCUM), the prescription and the source's performer. A problem is raised as
``Bad`` with the path of the element at fault."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from stock.ledger import NewEntry
from stock.settings import Fhir
from web.interop.fhir_codes import unit_problem
from web.interop.fhir_items import Bad, Catalog, Item, item_of

DISPENSE_STATUSES = ("preparation", "in-progress", "cancelled", "on-hold", "completed", "entered-in-error",
                     "stopped", "declined", "unknown")


@dataclass
class _Medicine:
    item: Item
    lot: str
    expiry: date | None
    path: str                      # where the medicine was read from, for lot problems


def _entry_id_for(res: dict, sys: Fhir) -> str:
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == sys.entry_system and ident.get("value"):
            return str(ident["value"])
    rid = res.get("id")
    if not isinstance(rid, str) or not rid:
        raise Bad("id", "the resource needs an id (or a Dawa entry identifier) to be imported idempotently")
    if len(rid) <= 59:
        return f"fhir-{rid}"
    return "fhir-" + hashlib.sha256(rid.encode()).hexdigest()[:40]


def _identifier_value(ref, system: str, path: str, what: str, resolve) -> str:
    """The value of ``ref``'s identifier in ``system``, looking through a resolvable reference."""
    if not isinstance(ref, dict):
        raise Bad(path, f"must be a Reference naming the {what}")
    ident = ref.get("identifier")
    if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
        return str(ident["value"])
    target = resolve(ref.get("reference"))
    if target is not None:
        for i in target.get("identifier") or []:
            if isinstance(i, dict) and i.get("system") == system and i.get("value"):
                return str(i["value"])
    raise Bad(f"{path}.identifier", f"no identifier with system {system} naming the {what}")


def _medication_of(res: dict, sys: Fhir, resolve, catalog: Catalog) -> _Medicine:
    """The item, lot and expiry a dispense names."""
    if "medicationCodeableConcept" in res:
        path = "medicationCodeableConcept"
        return _Medicine(item_of(res[path], None, sys, path, catalog), "", None, path)
    if "medicationReference" in res:
        path, ref = "medicationReference", res["medicationReference"]
        lot_path = "medicationReference"
    elif isinstance(res.get("medication"), dict):
        med = res["medication"]
        if "concept" in med:
            return _Medicine(item_of(med["concept"], None, sys, "medication.concept", catalog), "", None,
                             "medication.concept")
        path, ref, lot_path = "medication.reference", med.get("reference"), "medication"
    else:
        raise Bad("medication", "no medication (medicationReference, medicationCodeableConcept or medication)")
    if not isinstance(ref, dict):
        raise Bad(path, "must be a Reference to a Medication")
    med = resolve(ref.get("reference"))
    if med is None or med.get("resourceType") != "Medication":
        raise Bad(f"{path}.reference", f"{ref.get('reference')!r} names no Medication contained or in the bundle")
    where = f"{path}(Medication)"
    item = item_of(med.get("code"), med, sys, f"{where}.code", catalog)
    batch = med.get("batch") or {}
    lot = batch.get("lotNumber") or ""
    if not isinstance(lot, str):
        raise Bad(f"{where}.batch.lotNumber", "must be a string")
    expiry = None
    if batch.get("expirationDate"):
        text = str(batch["expirationDate"])
        try:
            expiry = date.fromisoformat(text[:10])
        except ValueError:
            raise Bad(f"{where}.batch.expirationDate", f"{text!r} is not a date") from None
    return _Medicine(item, lot.strip(), expiry, lot_path)


def _timestamp(text, path: str) -> datetime:
    if not isinstance(text, str) or not text:
        raise Bad(path, "is required: when the medicine was handed over")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Bad(path, f"{text!r} is not a FHIR dateTime") from None
    if t.tzinfo is None or "T" not in text:
        raise Bad(path, f"{text!r} must be a time with a zone offset, not a date or a local time")
    return t


def _quantity_of(res: dict, item: Item) -> Decimal:
    q = res.get("quantity")
    if not isinstance(q, dict) or q.get("value") is None:
        raise Bad("quantity.value", "is required")
    try:
        value = Decimal(str(q["value"]))
    except InvalidOperation:
        raise Bad("quantity.value", f"{q['value']!r} is not a number") from None
    if isinstance(q["value"], (str, bool)) or not value.is_finite():
        raise Bad("quantity.value", f"{q['value']!r} is not a number")
    if value <= 0:
        raise Bad("quantity.value", f"must be greater than zero ({value})")
    problem = unit_problem(item.unit, unit=q.get("unit"), system=q.get("system"), code=q.get("code"))
    if problem:
        raise Bad(*problem)
    return value


def _performer(res: dict) -> tuple[str | None, str | None]:
    """(system, value) of the source's performer: kept as provenance, never as the author."""
    performers = res.get("performer") or []
    if performers and isinstance(performers, list) and isinstance(performers[0], dict):
        actor = performers[0].get("actor") or {}
        if isinstance(actor, dict):
            ident = actor.get("identifier")
            if isinstance(ident, dict) and ident.get("value"):
                return (str(ident.get("system") or "")[:200] or None), str(ident["value"])[:200]
            if actor.get("display"):
                return None, str(actor["display"])[:200]
    return None, None


def parse_dispense(res: dict, sys: Fhir, resolve, imported_by: str, catalog: Catalog,
                    facilities: set[str]) -> tuple[NewEntry, str, str | None, str | None] | str:
    """The NewEntry a completed MedicationDispense states (with the path its lot came from and the
    source's performer), or the reason it is not recorded."""
    entry_id = _entry_id_for(res, sys)
    status = res.get("status")
    if status not in DISPENSE_STATUSES:
        raise Bad("status", f"{status!r} is not a MedicationDispense status ({', '.join(DISPENSE_STATUSES)})")
    if status != "completed":
        return f"status {status}: only completed dispensing is recorded"
    location = res.get("location")
    if location is None:
        raise Bad("location", "is required: the facility that dispensed")
    facility = _identifier_value(location, sys.facility_system, "location", "facility", resolve)
    if facility not in facilities:
        raise Bad("location.identifier", f"unknown facility {facility!r}")
    medicine = _medication_of(res, sys, resolve, catalog)
    card = _identifier_value(res.get("subject"), sys.patient_system, "subject", "patient's health card", resolve)
    occurred = _timestamp(res.get("whenHandedOver"), "whenHandedOver")
    quantity = _quantity_of(res, medicine.item)
    rx = None
    prescriptions = res.get("authorizingPrescription") or []
    if not isinstance(prescriptions, list):
        raise Bad("authorizingPrescription", "must be a list of References")
    if len(prescriptions) > 1:
        raise Bad("authorizingPrescription", f"names {len(prescriptions)} prescriptions; a dispensing fills one")
    if prescriptions:
        rx = _identifier_value(prescriptions[0], sys.prescription_system, "authorizingPrescription[0]",
                               "prescription", resolve)
    source_system, source_user = _performer(res)
    new = NewEntry(entry_id=entry_id, kind="dispense", facility_code=facility, item_code=medicine.item.code,
                   quantity=quantity, occurred_at=occurred, recorded_by=imported_by, lot_number=medicine.lot,
                   expiry_date=medicine.expiry, health_card_id=card, prescription_id=rx)
    return new, medicine.path, source_system, source_user
