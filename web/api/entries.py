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
(web.api.writers): each is answered after the commit that holds it, and one refused takes none of
the others down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from stock import errors as domain
from stock.db import RETRY_ATTEMPTS, retry_pause, retryable
from stock import rules
from stock.ledger import NewEntry, check_shape, lock_chains, post
from stock.models import Facility, LedgerEntry, User
from web import audit
from web.access import STAFF, require_roles, reversal_refusal, scope_of
from web.api.schemas import ErrorBody
from web.api.writers import GroupWriter

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


class Problems(Exception):
    def __init__(self, status: int, problems: list[dict[str, str]]):
        super().__init__(problems[0]["message"])
        self.status = status
        self.problems = problems


def problem_response(status: int, problems: list[dict[str, str]]) -> JSONResponse:
    first = problems[0]
    body: dict[str, Any] = {"field": first["field"], "message": first["message"]}
    if len(problems) > 1:
        body["problems"] = problems
    return JSONResponse({"error": body}, status_code=status)


async def json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def _at(index: int, field: str | None) -> str:
    return f"entries[{index}]" + (f".{field}" if field else "")


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


_FACILITY = Facility.__table__
# Built once: a statement made per request costs more to construct and look up than to run.
_FACILITIES = select(_FACILITY.c.id, _FACILITY.c.code, _FACILITY.c.region).where(
    _FACILITY.c.code.in_(bindparam("codes", expanding=True)))


_ENTRY = LedgerEntry.__table__
_TARGETS = (
    select(_ENTRY.c.entry_id, _ENTRY.c.recorded_by, _ENTRY.c.recorded_at, _FACILITY.c.id, _FACILITY.c.code,
           _FACILITY.c.region)
    .select_from(_ENTRY.join(_FACILITY, _FACILITY.c.id == _ENTRY.c.facility_id))
    .where(_ENTRY.c.entry_id.in_(bindparam("ids", expanding=True)))
)


def reversal_problems(db: Session, user: User, entries: list[NewEntry], known: dict) -> list[dict[str, str]]:
    """Refusals of the batch's reversals by web.access's reversal rule, asked of each target's own
    facility and author (a target not recorded yet, later in this batch say, is the caller's own,
    recorded now, at the reversal's facility). The ledger then holds each reversal to the rule book."""
    wanted = sorted({e.reverses for e in entries if e.reverses})
    if not wanted:
        return []
    stored = {row.entry_id: row for row in db.connection().execute(_TARGETS, {"ids": wanted})}
    now = datetime.now(timezone.utc)
    problems = []
    for i, e in enumerate(entries):
        if not e.reverses:
            continue
        target = stored.get(e.reverses)
        if target is not None:
            facility, by, at = _Place(target.id, target.code, target.region), target.recorded_by, target.recorded_at
        else:
            facility, by, at = known[e.facility_code], user.username, now
        refusal = reversal_refusal(user, entry_id=e.reverses, facility=facility, recorded_by=by, recorded_at=at,
                                   now=now)
        if refusal is not None:
            problems.append({"field": _at(i, "reverses"), "message": refusal.message})
    return problems


@dataclass(frozen=True)
class _Place:
    """A facility as access rules read it."""

    id: int
    code: str
    region: str | None


def scope_problems(db: Session, user: User, raw: list, known: dict | None = None) -> tuple[list, list, dict]:
    """(refusals, unknown facilities, facility id by code) for the facilities the batch names,
    well-formed entries or not: a refusal for scope comes before any other problem. ``known``
    holds the facilities read before in the same transaction (a group's), and gains those read."""
    index: dict[str, list[int]] = {}
    for i, item in enumerate(raw):
        if isinstance(item, dict) and isinstance(item.get("facility_code"), str):
            index.setdefault(item["facility_code"][:64], []).append(i)
    codes = set(index)
    known = {} if known is None else known
    missing = sorted(codes - set(known))
    if missing:
        known.update((f.code, f) for f in db.connection().execute(_FACILITIES, {"codes": missing}))
    found = {code: known[code] for code in codes if code in known}
    scope = scope_of(user)
    refused, unknown = [], []
    for code in sorted(codes):
        fac = found.get(code)
        for i in index.get(code, []):
            if fac is None:
                unknown.append({"field": _at(i, "facility_code"), "message": f"unknown facility {code!r}"})
            elif not scope.allows(fac):
                refused.append({"field": _at(i, "facility_code"),
                                "message": f"facility {code} is outside your scope"})
    key = lambda p: int(p["field"].split("[")[1].split("]")[0])  # noqa: E731 - batch order
    return sorted(refused, key=key), sorted(unknown, key=key), {c: f.id for c, f in found.items()}


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


GROUP_BATCH_MAX = 20
"""A small batch: checked on the event loop and posted in a group. Batches of more entries than
this are checked in a worker thread and posted in a transaction of their own."""
PG_GROUPS = 2
"""Groups of batches posted at once on PostgreSQL: one runs while another waits on its commit's
flush to disk. SQLite takes one writer at a time, so one group."""


def _writer(request: Request) -> GroupWriter:
    """The app's group writer for the running event loop (tests start several loops)."""
    state = request.app.state
    loop = asyncio.get_running_loop()
    writer = getattr(state, "entry_writer", None)
    if writer is None or writer.loop is not loop:
        sessions = state.sessions
        writer = state.entry_writer = GroupWriter(
            lambda batches: record_group(sessions, batches),
            concurrency=1 if state.engine.dialect.name == "sqlite" else PG_GROUPS)
    return writer


@dataclass
class Batch:
    """A request's batch, checked without the database, waiting to be posted."""

    request: Request
    user: User
    raw: list
    entries: list[NewEntry]
    problems: list[dict[str, str]]

    def facilities(self) -> list[str]:
        return sorted({e.facility_code for e in self.entries})


class _Refused(Exception):
    """An entry the ledger refused: the batch's transaction must be rolled back."""

    def __init__(self, index: int, error: domain.DawaError):
        super().__init__(error.message)
        self.index, self.error = index, error

    def response(self) -> JSONResponse:
        from web.app import domain_status

        return problem_response(domain_status(self.error),
                                [{"field": _at(self.index, self.error.field), "message": self.error.message}])


def record_group(sessions, batches: list[Batch]) -> list[JSONResponse | Exception]:
    """Post ``batches`` in one transaction and commit once (in a worker thread); if any of them
    fails, roll back and post each in a transaction of its own, so that each answers as it would
    alone. The group takes every facility's chain-head lock before its first write, in one order
    (stock.ledger.lock_chains), so concurrent groups on PostgreSQL cannot deadlock, whichever
    facilities their batches name and in whatever order."""
    answers: dict[int, JSONResponse | Exception] = {}
    # Large batches go alone: a group holds the write lock (SQLite) for as long as it runs.
    small = [i for i, b in enumerate(batches) if len(b.entries) <= GROUP_BATCH_MAX]
    if len(small) > 1:
        with sessions() as db:
            try:
                known: dict = {}
                audits: list[dict] = []
                lock_chains(db, [f for i in small for f in batches[i].facilities()])
                grouped = {i: record_batch(db, batches[i], known, audits) for i in small}
                audit.insert_rows(db, audits)
                db.commit()
                answers.update(grouped)
            except Exception:  # noqa: BLE001 - each batch runs again alone and answers for itself
                db.rollback()
    for i, b in enumerate(batches):
        if i not in answers:
            answers[i] = record_alone(sessions, b)
    return [answers[i] for i in range(len(batches))]


def record_alone(sessions, batch: Batch) -> JSONResponse | Exception:
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        with sessions() as db:
            try:
                audits: list[dict] = []
                answer = record_batch(db, batch, {}, audits)
                audit.insert_rows(db, audits)
                db.commit()
                return answer
            except _Refused as refused:
                db.rollback()
                return refused.response()
            except Exception as exc:  # noqa: BLE001 - raised in the request's own handler
                db.rollback()
                if retryable(exc) and attempt < RETRY_ATTEMPTS:  # a deadlock or serialization failure
                    retry_pause(attempt)
                    continue
                return exc
    raise AssertionError("unreachable")


def record_batch(db: Session, batch: Batch, known: dict, audits: list[dict]) -> JSONResponse:
    """Scope and posting of one batch in ``db``'s transaction, its audit records added to
    ``audits``; the caller writes them and commits. A refusal found before posting is answered
    (nothing was written); an entry the ledger refuses raises _Refused (the caller rolls back).
    ``known``: the facilities the transaction has read, for scope_problems."""
    request, user, entries = batch.request, batch.user, batch.entries
    try:
        refused, unknown, facility_ids = scope_problems(db, user, batch.raw, known)
        if refused:
            raise Problems(403, refused)
        problems = sorted(batch.problems + unknown, key=lambda p: int(p["field"].split("[")[1].split("]")[0]))
        if problems:
            raise Problems(422, problems)
        refused = reversal_problems(db, user, entries, known)
        if refused:
            raise Problems(403, refused)
    except Problems as exc:
        return problem_response(exc.status, exc.problems)

    # Every facility's chain head first, in one order, as for a group: a batch naming facilities
    # in another order than a concurrent one must not wait on it in a cycle (PostgreSQL).
    lock_chains(db, batch.facilities())
    days = request.app.state.settings.ledger_catch_up_days
    catch_up = timedelta(days=days) if days else None
    # The answer is BatchOut's JSON, built as plain dicts: one small entry's models and their
    # dump cost more than its SQL.
    results: list[dict[str, Any]] = []
    for i, e in enumerate(entries):
        try:
            posted = post(db, e, catch_up=catch_up)[0]
        except domain.DawaError as exc:
            raise _Refused(i, exc) from exc
        results.append({"index": i, "entry_id": e.entry_id, "created": posted.created,
                        "notes": [{"code": n.code, "message": n.message} for n in posted.notes]})
        if posted.created:
            audits.append(audit.row_values(
                request, "ledger_post", "ledger_entry", e.entry_id,
                {"kind": e.kind, "item": e.item_code, "lot": e.lot_number, "quantity": e.quantity,
                 "notes": [n.code for n in posted.notes], "reason": e.reason, "via": "api"},
                facility_id=facility_ids[e.facility_code]))
    created = sum(r["created"] for r in results)
    return JSONResponse({"created": created, "already_recorded": len(results) - created, "entries": results},
                        status_code=201 if created else 200)
