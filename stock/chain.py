"""Tamper evidence: a SHA-256 hash chain over each facility's ledger entries.

Each entry's hash covers the previous entry's hash and a canonical encoding of the entry, written
with business codes (facility, item, lot, health card) rather than internal ids, so that the chain
speaks of what happened and not of how rows were numbered. Altering, deleting or inserting a row
behind the application's back breaks the chain at that row; exporting the chain heads now and then
(``dawa ledger head``) makes a later cut-off of the tail provable too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from stock.canonical import (  # noqa: F401 - the chain's canonical text, re-exported
    FIELDS,
    GENESIS,
    REFUSED,
    SEP,
    VERSION,
    encode,
    epoch_us,
    link,
    payload_sql,
    refused_character,
)
from stock.chain_read import _rows, _storage_order_summaries  # noqa: F401 - _rows is part of this module's interface


@dataclass
class ChainBreak:
    facility_code: str
    position: int
    entry_id: str | None
    problem: str

    def __str__(self) -> str:
        who = f"entry {self.entry_id}" if self.entry_id else "the chain"
        return f"{self.facility_code}: {who} at position {self.position}: {self.problem}"


@dataclass
class VerifyReport:
    facilities: int = 0
    entries: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


def _us(value) -> int:
    """Epoch microseconds of a timestamp as the driver returns it (SQLite: naive UTC text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return epoch_us(value)


@dataclass
class _Walk:
    """What walking one facility's chain found."""

    code: str
    facility_id: int
    entries: int = 0
    length: int = 0            # entries in the unbroken part of the chain
    last_hash: str = GENESIS
    broken: ChainBreak | None = None
    hash_at_want: str | None = None


def _walk_ordered(rows, want: dict[str, int]) -> dict[int, _Walk]:
    """The exact walk: each facility's rows in chain order; names the first broken entry."""
    walks: dict[int, _Walk] = {}
    prefix = "\x1e" + VERSION + SEP
    sha = hashlib.sha256
    w = None
    for code, seq, entry_id, payload, stored, facility_id in rows:
        if w is None or w.facility_id != facility_id:
            w = walks[facility_id] = _Walk(code, facility_id)
        w.entries += 1
        if w.broken:
            continue
        expected = w.length + 1
        if seq != expected:
            gap = seq - expected
            w.broken = ChainBreak(
                code, expected, entry_id,
                f"found position {seq} where {expected} was expected: "
                f"{gap} entr{'y' if gap == 1 else 'ies'} before it deleted")
        elif payload is None or sha((w.last_hash + prefix + payload).encode("utf-8")).hexdigest() != stored:
            w.broken = ChainBreak(
                code, seq, entry_id,
                "content does not match its hash: altered, or inserted out of band")
        else:
            w.length, w.last_hash = seq, stored
            if want.get(code) == seq:
                w.hash_at_want = stored
    return walks


def _walk_storage_order(summaries, codes: dict[int, str]) -> tuple[dict[int, _Walk], set[int]]:
    """The fast walk: the ledger in storage order, range by range, every facility's chain
    advanced side by side.

    Entries are stored in the order they were written, so a sound chain is met in chain order
    and checks exactly as in ``_walk_ordered``: each range's summary has checked every entry but a
    facility's first in the range, which must follow the last stored hash of the ranges before.
    A facility where anything is out of place (a position out of turn, a hash that does not match)
    is only marked suspect here: the caller walks it again in chain order, which names its first
    broken entry exactly. Texts come from the lean query (see ``_payload_sql``): they already start
    with the version.
    """
    lengths: dict[int, int] = {}
    hashes: dict[int, bytes] = {}
    at_want: dict[int, bytes] = {}
    suspect: set[int] = set()
    sha = hashlib.sha256
    genesis = GENESIS.encode()
    for summary in summaries:
        for facility_id, (seq, payload, stored, last_seq, last_stored, sound, at) in summary.items():
            if facility_id in suspect:
                continue
            if (not sound or seq != lengths.get(facility_id, 0) + 1 or payload is None
                    or sha(hashes.get(facility_id, genesis) + payload).hexdigest().encode() != stored):
                suspect.add(facility_id)
                continue
            lengths[facility_id] = last_seq
            hashes[facility_id] = last_stored
            if at is not None:
                at_want[facility_id] = at
    walks: dict[int, _Walk] = {}
    for facility_id in lengths.keys() | suspect:
        w = walks[facility_id] = _Walk(codes.get(facility_id, str(facility_id)), facility_id)
        if facility_id not in suspect:
            w.length = w.entries = lengths[facility_id]
            w.last_hash = hashes[facility_id].decode("ascii")
            if facility_id in at_want:
                w.hash_at_want = at_want[facility_id].decode("ascii")
    return walks, suspect


def verify(session: Session, against: dict[str, tuple[int, str]] | None = None) -> VerifyReport:
    """Recompute every facility's chain and name the first broken entry of each.

    ``against`` maps facility code to a (length, hash) head exported earlier: the chain must still
    contain that entry unchanged, which proves no tail was cut off since.
    """
    report = VerifyReport()
    heads_now = {h["facility_code"]: (h["length"], h["hash"]) for h in heads(session)}
    want = {code: length for code, (length, _h) in (against or {}).items()}
    if session.get_bind().dialect.name == "sqlite":
        codes = dict(session.execute(text("SELECT id, code FROM facility")).all())
        wanted = {fid: want[code] for fid, code in codes.items() if code in want}
        walks, suspect = _walk_storage_order(_storage_order_summaries(session, wanted), codes)
        if suspect:
            walks.update(_walk_ordered(_rows(session, facility_ids=sorted(suspect)), want))
    else:
        walks = _walk_ordered(_rows(session), want)
    hashes_at: dict[str, str] = {}
    lengths: dict[str, tuple[int, int]] = {}  # code -> (facility_id, entries in an unbroken chain)
    visited: set[str] = set()
    for facility_id in sorted(walks):
        w = walks[facility_id]
        visited.add(w.code)
        report.facilities += 1
        report.entries += w.entries
        if w.broken:
            report.breaks.append(w.broken)
        else:
            _close(report, w.code, w.length, w.last_hash, heads_now)
            lengths[w.code] = (facility_id, w.length)
        if w.hash_at_want is not None:
            hashes_at[w.code] = w.hash_at_want
    _beyond_head(session, report, lengths, heads_now)
    for code, (length, _h) in heads_now.items():
        if code not in visited and length > 0:
            report.breaks.append(ChainBreak(
                code, 1, None, f"chain head records {length} entries but none remain"))
    seen = {b.facility_code for b in report.breaks}
    for code, (length, head_hash) in (against or {}).items():
        if code not in seen and length > 0 and hashes_at.get(code) != head_hash:
            report.breaks.append(ChainBreak(
                code, length, None,
                f"the exported head (length {length}) is no longer in the chain: "
                "history was cut off or rewritten since it was exported"))
    return report


def _close(report, code, length, last_hash, heads) -> None:
    """Compare the end of a recomputed, unbroken chain with the stored head."""
    if code not in heads:
        return
    head_length, head_hash = heads[code]
    if head_length > length:
        report.breaks.append(
            ChainBreak(code, length + 1, None,
                       f"chain head records {head_length} entries, only {length} remain: "
                       "the last were deleted")
        )
    elif head_length == length and head_hash != last_hash:
        report.breaks.append(ChainBreak(code, length, None, "chain head hash does not match"))


def _beyond_head(session: Session, report: VerifyReport, lengths: dict[str, tuple[int, int]],
                 heads_before: dict[str, tuple[int, str]]) -> None:
    """Report chains that run past their recorded head.

    Every hash can be recomputed by anyone, so a row appended out of band with a correct hash
    passes the chain itself: only the head, which the write path advances in the same
    transaction, tells it apart. Heads were read before the entries and legitimate writers may
    have appended since, so a chain longer than that first read is checked against a fresh read
    of the heads, which can only be at least as long as any chain already read.
    """
    suspects = [code for code, (_fid, n) in lengths.items()
                if n > heads_before.get(code, (0, GENESIS))[0]]
    if not suspects:
        return
    heads_after = {h["facility_code"]: h["length"] for h in heads(session)}
    for code in suspects:
        facility_id, n = lengths[code]
        recorded = heads_after.get(code, 0)
        if n <= recorded:
            continue
        first = session.scalar(
            text("SELECT entry_id FROM ledger_entry WHERE facility_id = :f AND chain_seq = :n"),
            {"f": facility_id, "n": recorded + 1},
        )
        report.breaks.append(ChainBreak(
            code, recorded + 1, first,
            f"the chain has {n} entries but its head records {recorded}: "
            "entries after the head were inserted out of band"))


def heads(session: Session) -> list[dict]:
    rows = session.execute(
        text(
            "SELECT f.code, h.length, h.head_hash FROM chain_head h "
            "JOIN facility f ON f.id = h.facility_id ORDER BY f.code"
        )
    )
    return [{"facility_code": r.code, "length": int(r.length), "hash": r.head_hash} for r in rows]


def write_heads(session: Session, path: Path, now: datetime) -> list[dict]:
    data = {"exported_at": now.isoformat(), "heads": heads(session)}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data["heads"]


def read_heads(path: Path) -> dict[str, tuple[int, str]]:
    """Read a heads file; raises ValueError naming the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {h["facility_code"]: (int(h["length"]), str(h["hash"])) for h in data["heads"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a chain heads file written by `dawa ledger head` ({exc})") from exc

