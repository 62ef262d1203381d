"""Prescriptions as FHIR MedicationRequests, R4 or R5 (the conventions of
``web.interop.fhir_resources``): what a dispense's ``authorizingPrescription`` points to."""

from __future__ import annotations

from functools import lru_cache

from stock.settings import Fhir
from web.interop.fhir_codes import UCUM
from web.interop.fhir_resources import concept, ident, resource_id, stored_quantity

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"


def medication_request(sys: Fhir, version: str, rx, subject: dict, item, facility_code: str,
                       facility_name: str) -> dict:
    res = {
        "resourceType": "MedicationRequest",
        "id": resource_id(rx.code),
        "identifier": [ident(sys.prescription_system, rx.code)],
        "status": "unknown",
        "intent": "order",
        "subject": subject,
        "authoredOn": rx.issued_on.isoformat(),
        "requester": _requester(rx.prescriber),
        "dispenseRequest": {"quantity": stored_quantity(rx.quantity, item.unit),
                            "expectedSupplyDuration": _days(rx.days_supply)},
        "note": _written_at(facility_code, facility_name),
    }
    med = concept(sys, item.code, item.name, item.atc_code, item.gtin)
    if version == "R4":
        res["medicationCodeableConcept"] = med
        if rx.diagnosis_code:
            res["reasonCode"] = _reason(rx.diagnosis_code, version)
    else:
        res["medication"] = {"concept": med}
        if rx.diagnosis_code:
            res["reason"] = _reason(rx.diagnosis_code, version)
    return res


# Parts of a MedicationRequest that prescriptions share, one dict each (never changed after).
@lru_cache(maxsize=4096)
def _requester(prescriber: str) -> dict:
    return {"type": "Practitioner", "display": prescriber}


@lru_cache(maxsize=1024)
def _days(days: int) -> dict:
    return {"value": days, "unit": "days", "system": UCUM, "code": "d"}


@lru_cache(maxsize=4096)
def _written_at(facility_code: str, facility_name: str) -> list[dict]:
    return [{"text": f"written at {facility_code} ({facility_name})"}]


@lru_cache(maxsize=4096)
def _reason(diagnosis_code: str, version: str) -> list[dict]:
    diagnosis = {"coding": [{"system": ICD10_SYSTEM, "code": diagnosis_code}]}
    return [diagnosis] if version == "R4" else [{"concept": diagnosis}]
