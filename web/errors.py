"""How a domain error reads over HTTP: one table for the pages, the API and the FHIR routes.

It sits below the app and the routers alike, so that a router needing a status does not import
the app that mounts it.
"""

from __future__ import annotations

from anomaly.workflow import IllegalTransition
from stock import errors as domain
from stock.requisitions.errors import RequisitionExists, WrongState

DOMAIN_STATUS: dict[type[domain.DawaError], int] = {
    domain.UnknownFacility: 404,
    domain.UnknownItem: 404,
    domain.UnknownEntry: 404,
    domain.EntryConflict: 409,
    domain.AlreadyReversed: 409,
    domain.InsufficientStock: 409,
    domain.InvalidEntry: 422,
    domain.UnknownCounterparty: 422,
    IllegalTransition: 409,  # the flag's state does not allow the action
    WrongState: 409,  # the requisition's state does not allow the step
    RequisitionExists: 409,
}
"""HTTP status of each domain error on the API; any other DawaError is a 400."""


def domain_status(exc: domain.DawaError) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    if type(exc).__name__.startswith("Unknown"):
        return 404
    return 400


__all__ = ["DOMAIN_STATUS", "domain_status"]
