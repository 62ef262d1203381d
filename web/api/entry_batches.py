"""Posting the batches of ``POST /api/v1/entries`` (web.api.entries): each batch's scope and
reversals checked against the database, then its entries posted through the ledger's one write
path, small batches grouped into one transaction and one commit (web.api.writers). Answers are
the API's JSON, every problem naming the batch index and field (``entries[3].quantity``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from stock import errors as domain
from stock.db import RETRY_ATTEMPTS, retry_pause, retryable
from stock.ledger import NewEntry, lock_chains, post
from stock.models import Facility, LedgerEntry, User
from web import audit
from web.access import reversal_refusal, scope_of
from web.api.writers import GroupWriter
from web.errors import domain_status


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


def _at(index: int, field: str | None) -> str:
    return f"entries[{index}]" + (f".{field}" if field else "")


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
