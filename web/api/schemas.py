"""Shapes of the API's answers. Quantities are JSON numbers in the item's base unit."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


Qty = Annotated[Decimal, PlainSerializer(_number, return_type=int | float, when_used="json")]


class Problem(BaseModel):
    field: str | None
    message: str


class ErrorDetail(BaseModel):
    field: str | None
    message: str
    problems: list[Problem] | None = None
    """Every problem, when a request had several (a batch of entries, a FHIR bundle)."""


class ErrorBody(BaseModel):
    error: ErrorDetail


MAX_OFFSET = 2**31 - 1
"""Largest paging offset: beyond what any database holds, and within what SQLite and PostgreSQL
take as an integer parameter (a larger number must be a 422, not a database error)."""
MAX_ID = 2**63 - 1
"""Largest row id (a signed 64-bit integer on both databases)."""


def json_errors(descriptions: dict[int, str]) -> dict[int, dict]:
    """Error responses documented as JSON ErrorBody, for a route whose own answer is of another
    media type (FastAPI would otherwise describe its errors in that type too)."""
    return {code: {"description": text,
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            for code, text in descriptions.items()}


class ScopeOut(BaseModel):
    kind: str
    facility: str | None = None
    region: str | None = None


class MeOut(BaseModel):
    username: str
    display_name: str | None
    role: str
    language: str | None
    scope: ScopeOut


class OnHandOut(BaseModel):
    facility: str
    item: str
    item_name: str
    unit: str
    lot: str
    expiry_date: date | None
    on_hand: Qty


class CardLineOut(BaseModel):
    entry_id: str
    occurred_at: datetime
    recorded_at: datetime
    kind: str
    lot: str
    quantity: Qty
    effect: Qty
    balance: Qty
    counterparty: str | None
    patient: str | None = Field(description="the patient's pseudonym (a keyed HMAC of the health card)")
    prescription_id: str | None
    reason: str | None
    document_number: str | None
    recorded_by: str
    reverses: str | None


class StockCardOut(BaseModel):
    facility: str
    item: str
    opening: Qty
    closing: Qty
    lines: list[CardLineOut]


class AuditOut(BaseModel):
    id: int
    at: datetime
    username: str | None
    action: str
    object_type: str | None
    object_id: str | None
    facility_id: int | None
    detail: dict[str, Any] | None
    ip: str | None


class PatientDispensingOut(BaseModel):
    entry_id: str
    occurred_at: datetime
    facility: str
    item: str
    item_name: str
    lot: str
    quantity: Qty
    prescription_id: str | None
    recorded_by: str
    reversed_by: str | None
