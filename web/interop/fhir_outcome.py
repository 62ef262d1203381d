"""Errors of the FHIR routes as FHIR OperationOutcome resources, which a FHIR client reads.

Every FHIR route of the API answers its errors this way (``FhirRoute``): refused access, unknown
facilities, bad parameters, and each problem of a refused import as one issue whose
``expression`` is the FHIRPath of the element at fault (``Bundle.entry[3].resource.quantity.value``).
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from stock.errors import DawaError
from web.access import AccessError

ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict",
               413: "too-costly", 422: "invalid", 500: "exception"}
"""HTTP status to an issue code of the required binding http://hl7.org/fhir/issue-type."""


class FhirJSONResponse(JSONResponse):
    media_type = "application/fhir+json"


def operation_outcome(status: int, issues: list[tuple[str, str | None]]) -> dict:
    """An OperationOutcome of ``(diagnostics, FHIRPath expression or None)`` issues."""
    code = ISSUE_CODES.get(status, "processing")
    out = []
    for text, expression in issues:
        issue = {"severity": "error", "code": code, "diagnostics": text}
        if expression:
            issue["expression"] = [expression]
        out.append(issue)
    return {"resourceType": "OperationOutcome", "issue": out}


def outcome_response(status: int, issues: list[tuple[str, str | None]], headers: dict | None = None) -> JSONResponse:
    return FhirJSONResponse(operation_outcome(status, issues), status_code=status, headers=headers)


class FhirRoute(APIRoute):
    """A route whose errors, its dependencies' included (login, scope, parameters), are answered
    as an OperationOutcome instead of the API's own error JSON."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def fhir_handler(request):
            from web.errors import domain_status
            from web.access import NotAuthenticated

            try:
                return await handler(request)
            except AccessError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
                return outcome_response(exc.status_code, [(exc.message, exc.field)], headers)
            except DawaError as exc:
                return outcome_response(domain_status(exc), [(exc.message, exc.field)])
            except RequestValidationError as exc:
                issues = []
                for e in exc.errors():
                    loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header"))
                    issues.append((f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")), loc or None))
                return outcome_response(422, issues or [("invalid request", None)])

        return fhir_handler


__all__ = ["FhirRoute", "FhirJSONResponse", "operation_outcome", "outcome_response", "ISSUE_CODES"]
