"""Interoperability over the API: FHIR bundles out and in, spreadsheet exports, DHIS2 data values.

The same access rules as everywhere (web.access): what a user exports is limited to their scope,
and a FHIR import that would record stock movements at a facility outside the caller's scope is
refused and rolled back whole. The work itself is web.interop's (the `dawa export` and `dawa fhir`
commands use the same functions).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.models import Facility, LedgerEntry, User
from web import audit, deps
from stock.pseudonyms import patient_key
from web.downloads import attachment
from web.access import (Forbidden, current_user, facility_in_scope, require_health_card_export, require_roles,
                        scope_of, visible_facilities)
from web.interop import fhir, spreadsheets
from web.interop.dhis2_mapping import MEASURES as MAPPING_MEASURES
from web.interop.dhis2_mapping import SCHEME_KEYS as MAPPING_SCHEME_KEYS
from web.interop.fhir_outcome import FhirJSONResponse, FhirRoute, outcome_response
from web.access import REVIEWERS, STAFF

router = APIRouter(tags=["interop"])
fhir_router = APIRouter(tags=["interop"], route_class=FhirRoute)
"""The FHIR routes: their errors are OperationOutcome resources (web.interop.fhir_outcome)."""



class FhirImportOut(BaseModel):
    dispenses: int
    added: int
    already_present: int
    lots_chosen: int = Field(description="dispenses that named no lot: Dawa chose it first-expiry-first-out")
    skipped: list[str]
    notes: dict[str, int]


OUTCOME = {"content": {"application/fhir+json": {"schema": {
    "type": "object", "description": "a FHIR OperationOutcome, one issue per problem",
    "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}}}}}}
FHIR_ERRORS = {code: {**OUTCOME, "description": text} for code, text in {
    400: "an unsupported FHIR version", 401: "not logged in / bad token", 403: "a facility outside your scope",
    404: "no such facility", 422: "a parameter or the bundle is invalid; each issue's expression names where"}.items()}


BUNDLE_SCHEMA = {"type": "object", "description": "a FHIR Bundle (R4 or R5)",
                 "required": ["resourceType"], "properties": {"resourceType": {"const": "Bundle"}}}
SPREADSHEETS = {"content": {"text/csv": {"schema": {"type": "string"}},
                            spreadsheets.MEDIA_TYPES["xlsx"]: {"schema": {"type": "string", "format": "binary"}}},
                "description": "the file, as an attachment"}


def _zoned(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidEntry(f"{name} must carry a time zone, e.g. 2026-03-01T00:00:00Z", field=name)
    return value


def _one_facility(db: Session, user: User, facility: str | None) -> str | None:
    """The facility code to limit an export to: the one asked for if in scope, else the user's
    own; a regional user must name one (an export covers one facility or everything)."""
    if facility:
        return facility_in_scope(db, user, facility).code
    scope = scope_of(user)
    if scope.kind == "facility":
        return db.get(Facility, scope.facility_id).code
    if scope.kind == "region":
        raise InvalidEntry("name a facility of your region", field="facility")
    return None


@fhir_router.get("/fhir/bundle", response_class=FhirJSONResponse,
                 responses={200: {"content": {"application/fhir+json": {"schema": BUNDLE_SCHEMA}},
                                  "description": "a Bundle of type transaction"}, **FHIR_ERRORS})
def fhir_bundle(request: Request, version: str = Query("R4", description="R4 or R5"),
                facility: str | None = Query(None, description="facility code; required unless national"),
                since: datetime | None = Query(None, description="recorded from this time (with zone): "
                                               "the last sync, for an incremental pull"),
                until: datetime | None = Query(None, description="recorded before this time (with zone)"),
                occurred_since: datetime | None = Query(None, description="moved from this time (with zone)"),
                occurred_until: datetime | None = Query(None, description="moved before this time (with zone)"),
                patient_ids: str = Query("pseudonym", description="pseudonym (default) or card: health cards "
                                         "in the clear, for the roles the install allows"),
                user: User = Depends(current_user), db: Session = Depends(deps.db)) -> JSONResponse:
    """Dispensing, deliveries, counts and monthly reports as a FHIR transaction Bundle of
    conditional updates, which a FHIR server loads idempotently. Patients are named by pseudonym
    unless health cards are asked for by a role allowed to (``web.access``)."""
    code = _one_facility(db, user, facility)
    settings = request.app.state.settings
    if patient_ids == "card":
        require_health_card_export(user, settings.fhir.health_card_roles)
    result = fhir.export_bundle(db, settings=settings, version=version, facility_code=code,
                                since=_zoned("since", since), until=_zoned("until", until),
                                occurred_since=_zoned("occurred_since", occurred_since),
                                occurred_until=_zoned("occurred_until", occurred_until), patient_ids=patient_ids,
                                patient_key=patient_key(settings) if patient_ids != "card" else None)
    # Every export is a read of patients' dispensing, pseudonymous or not: audited, saying which.
    audit.record(db, request, "fhir_export", "facility", code,
                 {"entries": len(result.bundle.get("entry") or []), "patients": result.counts.get("Patient", 0),
                  "patient_ids": patient_ids, "version": version, "via": "api"},
                 facility_id=facility_in_scope(db, user, code).id if code else None)
    db.commit()
    return FhirJSONResponse(result.bundle)


@fhir_router.post("/fhir/bundle", response_model=FhirImportOut, responses=FHIR_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/fhir+json": {"schema": BUNDLE_SCHEMA}, "application/json": {"schema": BUNDLE_SCHEMA}}}})
def fhir_import(request: Request, user: User = Depends(require_roles(*STAFF)),
                db: Session = Depends(deps.db), data: bytes = Depends(deps.body)) -> JSONResponse:
    """Record a bundle's completed MedicationDispense resources as dispensing, all or nothing,
    recorded by you (a performer the bundle names is kept as the source's, not as the author).
    Problems come back as an OperationOutcome, one issue per problem with its FHIRPath."""
    now = datetime.now(timezone.utc)
    allowed = None if scope_of(user).kind == "national" else {f.code for f in visible_facilities(db, user)}
    try:
        report = fhir.import_bundle(db, data, imported_by=user.username, systems=request.app.state.settings.fhir,
                                    facilities_allowed=allowed, now=now)
    except fhir.FhirImportFailed as exc:
        db.rollback()
        status = 403 if any(p.message.endswith("outside your scope") for p in exc.problems) else 422
        return outcome_response(status, [(str(p), p.expression()) for p in exc.problems])
    touched = list(db.scalars(select(Facility).join(LedgerEntry, LedgerEntry.facility_id == Facility.id)
                              .where(LedgerEntry.recorded_at == now).distinct()))
    for f in touched:
        audit.record(db, request, "fhir_import", "facility", f.code,
                     {"dispenses": report.dispenses, "added": report.added, "via": "api"}, facility_id=f.id)
    db.commit()
    return JSONResponse({"dispenses": report.dispenses, "added": report.added,
                         "already_present": report.already_present, "lots_chosen": report.lots_chosen,
                         "skipped": report.skipped, "notes": report.notes})


@router.get("/export/{name}", response_class=Response, responses={200: SPREADSHEETS})
def export(request: Request, name: str, facility: str | None = Query(None, description="facility code"),
           item: str | None = Query(None, description="item code (a stock card needs one)"),
           since: datetime | None = Query(None), until: datetime | None = Query(None),
           user: User = Depends(current_user), db: Session = Depends(deps.db)) -> Response:
    """``on-hand``, ``stock-card`` or ``flags`` as ``.csv`` or ``.xlsx`` (e.g. /export/on-hand.xlsx),
    limited to your scope. Flags are for auditors and admins. Stock cards name patients by
    pseudonym; exports of stock cards and flags are audited with their number of rows."""
    kind, dot, fmt = name.rpartition(".")
    if not dot or fmt not in spreadsheets.FORMATS:
        raise InvalidEntry(f"ask for {name}.csv or {name}.xlsx", field="format")
    if kind not in spreadsheets.KINDS:
        raise InvalidEntry(f"unknown export {kind!r}: choose one of {', '.join(spreadsheets.KINDS)}", field="kind")
    if kind == "flags" and user.role not in REVIEWERS:
        raise Forbidden(f"this needs the role {' or '.join(REVIEWERS)}; you are {user.role}")
    scope = scope_of(user)
    region = None
    if facility or scope.kind == "facility":
        code = _one_facility(db, user, facility)
    else:
        code = None
        region = scope.region
        if kind == "stock-card":
            raise InvalidEntry("a stock card needs a facility and an item", field="facility")
    body, rows = spreadsheets.export(db, kind, fmt, settings=request.app.state.settings,
                                     facility_code=code, item_code=item, region=region,
                                     since=_zoned("since", since), until=_zoned("until", until))
    if kind != "on-hand":  # movements and flags can name patients
        audit.record(db, request, "export_read", "export", name,
                     {"rows": rows, "facility": code, "item": item, "region": region, "via": "api"},
                     facility_id=facility_in_scope(db, user, code).id if code else None)
        db.commit()
    return Response(body, media_type=spreadsheets.MEDIA_TYPES[fmt],
                    headers=attachment(kind, ext=fmt))


IDENT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 50,
                "description": "a DHIS2 uid (a letter then 10 letters or digits), or a code when the id scheme is CODE"}
TARGET_SCHEMA = {"oneOf": [IDENT_SCHEMA, {"type": "object", "required": ["dataElement"], "additionalProperties": False,
                                          "properties": {"dataElement": IDENT_SCHEMA,
                                                         "categoryOptionCombo": IDENT_SCHEMA}}]}
SCHEME_SCHEMA = {"type": "string", "enum": ["UID", "CODE", "uid", "code"]}
MAPPING_SCHEMA = {
    "type": "object", "required": ["orgUnits", "items"], "additionalProperties": False,
    "description": "which DHIS2 org unit each facility is and which data elements each item's measures go to",
    "properties": {
        "dataSet": IDENT_SCHEMA, "attributeOptionCombo": IDENT_SCHEMA,
        **{k: SCHEME_SCHEMA for k in MAPPING_SCHEME_KEYS},
        "orgUnits": {"type": "object", "additionalProperties": IDENT_SCHEMA, "description": "facility code to org unit"},
        "items": {"type": "object", "description": "item code to its measures' data elements",
                  "additionalProperties": {"type": "object", "additionalProperties": False,
                                           "properties": {m: TARGET_SCHEMA for m in MAPPING_MEASURES}}},
    },
}


class Dhis2Out(BaseModel):
    payload: dict = Field(description="a DHIS2 dataValueSets payload: period and dataValues (and dataSet if mapped)")
    warnings: list[str] = Field(description="what was left out of the payload and why")


@router.post("/dhis2/{period}", response_model=Dhis2Out,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": MAPPING_SCHEMA}}}})
def dhis2_data_values(request: Request, period: str,
                      facility: str | None = Query(None, description="facility code; default: all in your scope"),
                      user: User = Depends(current_user),
                      db: Session = Depends(deps.read_db), body: bytes = Depends(deps.body)) -> JSONResponse:
    """A month's (``YYYY-MM``) figures per facility and item, from the ledger and the monthly
    reports, as a DHIS2 dataValueSets payload, for the mapping posted as the body (the same JSON as `dawa
    dhis2 export --mapping`). Only facilities in your scope are sent or named; what is unmapped is
    listed in ``warnings``. Nothing is stored: the payload is yours to send to DHIS2."""
    from web.interop import dhis2

    dhis2.parse_period(period)
    if facility:
        codes: set[str] | None = {facility_in_scope(db, user, facility).code}
    elif scope_of(user).kind == "national":
        codes = None
    else:
        codes = {f.code for f in visible_facilities(db, user)}
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidEntry("the body is not JSON: post the mapping", field="mapping") from None
    try:
        mapping = dhis2.parse_mapping(data, "mapping")
    except dhis2.MappingError as exc:
        problems = [{"field": "mapping", "message": p} for p in exc.problems]
        return JSONResponse({"error": {"field": "mapping", "message": problems[0]["message"],
                                       "problems": problems}}, status_code=422)
    result = dhis2.export_data_value_set(db, mapping, period, facility_codes=codes,
                                         default_zone=request.app.state.settings.default_timezone)
    return JSONResponse({"payload": result.payload, "warnings": result.warnings()})


router.include_router(fhir_router)
