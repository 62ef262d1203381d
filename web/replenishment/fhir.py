"""Requisitions as FHIR R5 SupplyRequest resources: one per line, in a collection Bundle.

What the facility asked for is the request's ``quantity`` until the supplier decides; from then on
the quantity is the approved one and what was asked stays in an extension, so a receiving system
sees both. The line's state follows the requisition: a draft is ``draft``, submitted, approved and
shipped are ``active``, received is ``completed``, rejected is ``cancelled``; an emergency is
``urgent``. Identifier systems are the deployment's (stock.settings.Fhir), as in web.interop.
"""

from __future__ import annotations

from datetime import timezone
from decimal import Decimal

from stock.settings import Fhir
from stock.requisitions.flow import LineView

REQUISITION_SYSTEM = "urn:dawa:requisition"
REQUESTED_EXTENSION = "urn:dawa:fhir:requested-quantity"
REASON_EXTENSION = "urn:dawa:fhir:decision-reason"
STATUS = {"draft": "draft", "submitted": "active", "approved": "active", "shipped": "active",
          "received": "completed", "rejected": "cancelled"}


def _number(q: Decimal) -> int | float:
    return int(q) if q == q.to_integral_value() else float(q)


def supply_requests(sys: Fhir, req, facility, supplier, lines: list[LineView], created_by: str) -> dict:
    entries = []
    for view in lines:
        line, item = view.line, view.item
        decided = line.approved is not None
        quantity = line.approved if decided else line.requested
        res = {
            "resourceType": "SupplyRequest",
            "id": f"{req.number}-{item.code}".replace("_", "-")[:64],
            "identifier": [{"system": REQUISITION_SYSTEM, "value": f"{req.number}/{item.code}"}],
            "status": "cancelled" if decided and quantity == 0 and req.status != "rejected" else STATUS[req.status],
            "priority": "urgent" if req.emergency else "routine",
            "item": {"concept": {"coding": [{"system": sys.item_system, "code": item.code, "display": item.name}],
                                 "text": item.name}},
            "quantity": {"value": _number(quantity), "unit": item.unit},
            "authoredOn": req.created_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            "requester": {"identifier": {"system": sys.user_system, "value": created_by}},
            "deliverFrom": {"type": "Location", "identifier": {"system": sys.facility_system, "value": supplier.code},
                            "display": supplier.name},
            "deliverTo": {"type": "Location", "identifier": {"system": sys.facility_system, "value": facility.code},
                          "display": facility.name},
        }
        extensions = []
        if decided:
            extensions.append({"url": REQUESTED_EXTENSION,
                               "valueQuantity": {"value": _number(line.requested), "unit": item.unit}})
        reason = line.approval_reason if decided else line.request_reason
        if reason:
            extensions.append({"url": REASON_EXTENSION, "valueString": reason})
        if extensions:
            res["extension"] = extensions
        entries.append({"fullUrl": f"urn:uuid:{req.number}-{item.code}", "resource": res})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


__all__ = ["supply_requests", "REQUISITION_SYSTEM", "REQUESTED_EXTENSION", "STATUS"]
