"""The one write path into the ledger.

``post`` is how every movement enters: the importer, the API, the pages and the tests all come
through here (the importer through its bulk twin in ``stock.bulk``, which keeps the same rules).
It validates, applies idempotency, keeps balances and the hash chain in step, and only flushes:
the caller (a request, a job, a CLI command) owns the transaction and commits or rolls back.

Malformed or impossible movements raise a domain error. Movements that break a policy (a patient
not in the register or deceased, no or an exceeded prescription, over the protocol ceiling, an
expired lot) are recorded as they happened and reported back as notes: they are the evidence
detection needs.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import rules
from stock.entries import (  # noqa: F401 - part of this module's interface
    NewEntry,
    PolicyNote,
    Posted,
    check_shape,
    hash_values,
    new_entry_id,
    serial_problem,
)
from stock.errors import UnknownEntry
from stock.ledger_sql import _LOCK_HEADS_STMT
from stock.models import LedgerEntry
from stock.posting import _post_one, _stored_view


def post(session: Session, entries: list[NewEntry] | NewEntry, *, now: datetime | None = None,
         catch_up: timedelta | None = None) -> list[Posted]:
    """Record movements in order, in the caller's transaction. All or nothing is the caller's
    commit or rollback: a domain error leaves earlier entries of the batch flushed but uncommitted,
    and nothing of the entry that raised it. ``catch_up``: the rule book's catch-up window (an
    entry older than this at its recording needs a reason; None: no limit)."""
    if isinstance(entries, NewEntry):
        entries = [entries]
    now = now or datetime.now(timezone.utc)

    if not entries:
        return []
    # The statements below are Core statements on the session's connection, which do not autoflush:
    # objects the caller added (a new facility, item or patient) reach the database first.
    session.flush()
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    if len(entries) > 1:
        lock_chains(session, [e.facility_code for e in entries])
    return [_post_one(session, conn, pg, e, now, catch_up) for e in entries]


def lock_chains(session: Session, facility_codes: list[str]) -> None:
    """Take the chain-head locks of these facilities now, in facility id order, as the bulk import
    does. A transaction that writes to several facilities takes them all before its first write:
    two such transactions then queue in one order and never wait for each other in a cycle, which
    PostgreSQL would break by failing one ("deadlock detected"). Posting locks each head again as
    it goes, at no cost. SQLite needs none of this: a writing transaction holds the database."""
    codes = sorted(set(facility_codes))
    if len(codes) < 2 or session.get_bind().dialect.name != "postgresql":
        return
    session.connection().execute(_LOCK_HEADS_STMT, {"codes": codes}).all()


def reverse(session: Session, entry_id: str, *, reason: str, by: str,
            now: datetime | None = None, new_id: str | None = None) -> Posted:
    """Correct an entry by a compensating adjustment that undoes its effect on stock.

    History is never rewritten: the original stays, and the reversal names it, the reason and
    who made it. An entry can be reversed once.
    """
    now = now or datetime.now(timezone.utc)
    target = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).one_or_none()
    if target is None:
        raise UnknownEntry(f"no entry {entry_id!r} to reverse", entry_id=entry_id)
    view = _stored_view(session, target)
    inverse = NewEntry(
        entry_id=new_id or new_entry_id(), kind="adjustment", facility_code=view["facility_code"],
        item_code=view["item_code"], lot_number=view["lot_number"], quantity=-target.effect,
        occurred_at=now, recorded_by=by, reason=reason, reverses=entry_id,
    )
    if target.effect == 0:  # the inverse of nothing would be refused for its shape: say why first
        raise rules.reversal_problem(
            rules.Movement(inverse.entry_id, target.facility_id, target.item_id, view["lot_number"], 0, entry_id),
            "adjustment", rules.Movement(entry_id, target.facility_id, target.item_id, view["lot_number"], 0),
            None)
    return post(session, inverse, now=now)[0]


__all__ = ["NewEntry", "Posted", "PolicyNote", "post", "lock_chains", "reverse", "check_shape",
           "new_entry_id", "hash_values", "serial_problem"]

