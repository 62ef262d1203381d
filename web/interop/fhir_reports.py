"""Facilities' monthly stock reports as FHIR: a MeasureReport (R4), one group per figure, or an
InventoryReport (R5) listing each figure as an item of its category (``web.interop.fhir_resources``
for the conventions they share with the movements)."""

from __future__ import annotations

from datetime import date

from stock.settings import Fhir
from web.interop.fhir_codes import UCUM
from web.interop.fhir_resources import (MED, concept, ident, location_ref, organization_ref, quantity, time,
                                        uid)

MEASURE = "urn:dawa:measure:monthly-stock"
MEASURE_SYSTEM = "urn:dawa:stock-measure"
REPORT_MEASURES = ("opening", "received", "consumed", "adjustment", "closing", "ordered")


def report_key(r) -> str:
    return f"{r.facility_code}/{r.item_code}/{r.period}/{r.revision}"


def _month(period: str) -> tuple[str, str]:
    y, m = int(period[:4]), int(period[5:7])
    end = date(y + (m == 12), m % 12 + 1, 1).toordinal() - 1
    return f"{period}-01", date.fromordinal(end).isoformat()


def monthly_report(sys: Fhir, version: str, r) -> dict:
    """A facility's monthly stock report: a MeasureReport (R4), one group per figure, or an
    InventoryReport (R5) listing each figure as an item of its category."""
    start, end = _month(r.period)
    key = report_key(r)
    med = {"resourceType": "Medication", "id": MED, "code": concept(sys, r.item_code, r.item_name, r.atc, r.gtin)}
    figures = [(m, getattr(r, m)) for m in REPORT_MEASURES if getattr(r, m) is not None]
    common = {"id": uid("report", key), "identifier": [ident(sys.report_system, key)], "contained": [med]}
    note = [{"text": f"revision {r.revision}; stockout days: "
                     f"{'not reported' if r.stockout_days is None else r.stockout_days}"}]
    if version == "R4":
        return {"resourceType": "MeasureReport", **common, "status": "complete", "type": "summary",
                "measure": MEASURE, "subject": location_ref(sys, r.facility_code, r.facility_name),
                "date": time(r.imported_at), "period": {"start": start, "end": end},
                "reporter": organization_ref(sys, r.facility_code, r.facility_name),
                "group": [{"code": {"coding": [{"system": MEASURE_SYSTEM, "code": m}],
                                    "text": f"{m} of {r.item_name}"},
                           "measureScore": quantity(v, r.unit)} for m, v in figures]
                + ([{"code": {"coding": [{"system": MEASURE_SYSTEM, "code": "stockout_days"}]},
                     "measureScore": {"value": r.stockout_days, "unit": "days", "system": UCUM, "code": "d"}}]
                   if r.stockout_days is not None else []),
                "evaluatedResource": [{"reference": f"#{MED}", "display": r.item_name}]}
    return {"resourceType": "InventoryReport", **common, "status": "active", "countType": "snapshot",
            "reportedDateTime": time(r.imported_at),
            "reportingPeriod": {"start": start, "end": end},
            "inventoryListing": [{
                "location": location_ref(sys, r.facility_code, r.facility_name),
                "item": [{"category": {"coding": [{"system": MEASURE_SYSTEM, "code": m}]},
                          "quantity": quantity(v, r.unit),
                          "item": {"reference": {"reference": f"#{MED}", "display": r.item_name}}}
                         for m, v in figures]}],
            "note": note}
