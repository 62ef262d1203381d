"""Posting ledger entries in batches, for integrations (a facility's own system, a sync job).

``POST /api/v1/entries`` takes ``{"entries": [...]}``, each entry in the terms of the data
contract's ledger rows. The batch goes through the ledger's one write path (stock.ledger.post) in
one transaction: every entry is recorded, or none is. ``entry_id`` is the idempotency key, so a
batch sent again (after a timeout, say) records nothing twice and answers which entries were
already there. ``recorded_by`` is the caller: it may be left out, and if given must be the caller's
own user name.

Every problem names the batch index and the field (``entries[3].quantity``). Problems found before
posting (shape, types, scope) are all reported at once, as ``problems`` beside the first one in
``error``; a refusal while posting (not enough stock, a conflicting entry_id) names the one entry.
A facility outside the caller's scope is refused (403) whatever else is wrong with the batch.

Batches that arrive together are posted together, one transaction and one commit for the group
(web.api.entry_batches): each is answered after the commit that holds it, and one refused takes none of
the others down.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from stock import errors as domain
from stock import rules
from stock.ledger import NewEntry, check_shape
from stock.models import User
from web.access import STAFF, require_roles
from web.api.entry_batches import GROUP_BATCH_MAX, Batch, Problems, _at, _writer, problem_response
from web.api.schemas import ErrorBody

router = APIRouter(tags=["ledger"])


MAX_BATCH = 1000
"""Entries in one request at most; send more as several batches."""

class EntryIn(BaseModel):
    """One ledger movement, as in the data contract's ledger.csv."""

    model_config = ConfigDict(extra="forbid")

    entry_id: str = Field(min_length=1, max_length=rules.MAX_TEXT, description="unique, stable id; the idempotency key")
    occurred_at: AwareDatetime = Field(description="when the movement happened, with its zone offset")
    facility_code: str = Field(min_length=1, max_length=32, description="the facility whose stock moves")
    kind: str = Field(description="receipt, dispense, transfer_out, transfer_in, adjustment, loss or count")
    item_code: str = Field(min_length=1, max_length=32)
    lot_number: str = Field("", max_length=rules.MAX_TEXT, description="empty: the item's untracked lot")
    expiry_date: date | None = Field(None, description="needed on a receipt or transfer_in of a new lot")
    quantity: Decimal = Field(max_digits=15, decimal_places=3, allow_inf_nan=False,
                              description="> 0, except adjustment (signed, non-zero) and count (>= 0)")
    health_card_id: str | None = Field(None, max_length=rules.MAX_TEXT, description="the patient; required on dispense")
    prescription_id: str | None = Field(None, max_length=rules.MAX_TEXT)
    counterparty_code: str | None = Field(None, max_length=rules.MAX_REASON,
                                          description="the other facility of a transfer; a supplier on a receipt")
    reason: str | None = Field(None, max_length=rules.MAX_REASON, description="required on loss and adjustment")
    document_number: str | None = Field(None, max_length=rules.MAX_TEXT)
    reverses: str | None = Field(None, max_length=rules.MAX_TEXT, description="the entry_id this entry corrects")
    recorded_by: str | None = Field(None, max_length=rules.MAX_TEXT, description="your user name; may be left out")
    serial_number: str | None = Field(None, max_length=64,
                                      description="the pack's GS1 serial number (AI 21) when it was scanned: "
                                                  "up to 20 characters of GS1 character set 82")


class NoteOut(BaseModel):
    code: str
    message: str


class EntryResult(BaseModel):
    index: int
    entry_id: str
    created: bool = Field(description="false: this entry_id was recorded before with the same content")
    notes: list[NoteOut] = Field(description="policies the movement breaks; recorded, never refused")


class BatchOut(BaseModel):
    created: int
    already_recorded: int
    entries: list[EntryResult]


REQUEST_SCHEMA = {
    "type": "object",
    "required": ["entries"],
    "additionalProperties": False,
    "properties": {"entries": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                               "items": EntryIn.model_json_schema()}},
}


async def json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def parse_batch(body: Any, user: User) -> tuple[list[NewEntry], list[dict[str, str]]]:
    """The batch as ledger entries, and every problem found without the database."""
    if body is _NOT_JSON:
        raise Problems(400, [{"field": None, "message": "the body is not JSON"}])
    if not isinstance(body, dict) or not isinstance(body.get("entries"), list):
        raise Problems(422, [{"field": "entries", "message": 'send {"entries": [...]}, a list of ledger entries'}])
    extra = sorted(set(body) - {"entries"})
    if extra:
        raise Problems(422, [{"field": extra[0], "message": f"unknown field {extra[0]!r}; send only entries"}])
    raw = body["entries"]
    if not raw:
        raise Problems(422, [{"field": "entries", "message": "the batch is empty"}])
    if len(raw) > MAX_BATCH:
        raise Problems(422, [{"field": "entries",
                              "message": f"{len(raw)} entries; send at most {MAX_BATCH} per batch"}])
    entries: list[NewEntry] = []
    problems: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        try:
            e = EntryIn.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err.get("loc", ()))
                problems.append({"field": _at(i, loc or None), "message": f"{loc or 'entry'}: {err.get('msg')}"})
            continue
        if e.recorded_by not in (None, user.username):
            problems.append({"field": _at(i, "recorded_by"),
                             "message": f"recorded_by is you ({user.username}); leave it out or give your own"})
            continue
        new = NewEntry(entry_id=e.entry_id, kind=e.kind, facility_code=e.facility_code, item_code=e.item_code,
                       quantity=e.quantity, occurred_at=e.occurred_at, recorded_by=user.username,
                       lot_number=e.lot_number, expiry_date=e.expiry_date, health_card_id=e.health_card_id,
                       prescription_id=e.prescription_id, counterparty_code=e.counterparty_code, reason=e.reason,
                       document_number=e.document_number, reverses=e.reverses,
                       serial_number=e.serial_number or None)
        try:
            check_shape(new)
        except domain.DawaError as exc:
            problems.append({"field": _at(i, exc.field), "message": exc.message})
            continue
        entries.append(new)
    return entries, problems


@router.post("/entries", response_model=BatchOut, status_code=201,
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": REQUEST_SCHEMA}}}},
             responses={200: {"model": BatchOut, "description": "every entry was recorded before"},
                        409: {"model": ErrorBody,
                              "description": "not enough stock, or an entry_id recorded with other content"}})
async def post_entries(request: Request, body: Any = Depends(json_body),
                       user: User = Depends(require_roles(*STAFF))):
    """Record a batch of ledger entries, all or nothing, idempotent by entry_id. 201 when at least
    one entry is new, 200 when all were recorded before."""
    # A small batch is checked on the event loop (no database, a fraction of a millisecond); a
    # large one in a worker thread, so that the loop keeps serving other requests meanwhile.
    small = (isinstance(body, dict) and isinstance(body.get("entries"), list)
             and len(body["entries"]) <= GROUP_BATCH_MAX)
    try:
        entries, problems = parse_batch(body, user) if small else await anyio.to_thread.run_sync(
            parse_batch, body, user)
    except Problems as exc:
        return problem_response(exc.status, exc.problems)
    return await _writer(request).submit(Batch(request, user, body["entries"], entries, problems))


