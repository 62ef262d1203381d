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
import os
import pickle
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from stock.chain_worker import summarize

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

def _payload_sql(dialect: str, *, ordered: bool = True, facility_ids: list[int] | None = None,
                 lean: bool = False) -> str:
    """The verification query: each entry's canonical text (FIELDS order, after the version) is
    built by the database itself, so Python only hashes. Must agree with ``_text`` exactly:
    NULL is '', quantities are whole thousandths, times are epoch microseconds, dates ISO.

    ``ordered`` walks each facility's chain in order; unordered (SQLite only) reads the table in
    storage order (by id), which is cheaper and is how ``verify`` first reads it. ``facility_ids``
    restricts the walk to those facilities.

    ``lean`` (SQLite, storage order, entries with ids between the two parameters): only (facility
    id, position, "\\x1e" + version + separator + canonical text, stored hash), text and hash as
    bytes, which Python hashes and compares without decoding or encoding them. Every value a row
    hands to Python is an object to build, so the fast walk takes no more than it hashes; the
    facility code comes from its id, and a suspect facility is walked again by the full query.
    A missing position or hash (possible only behind the schema's back) comes as 0 and as empty
    bytes, which never continue a chain, so that the fast walk need not test for NULL."""
    where = ""
    if facility_ids is not None:
        where = f"WHERE e.facility_id IN ({', '.join(str(int(f)) for f in facility_ids) or 'NULL'})"
    elif lean:
        where = "WHERE e.id BETWEEN ? AND ?"
    order = "ORDER BY e.facility_id, e.chain_seq" if ordered else "ORDER BY e.id"
    payload = payload_sql(dialect, head=lean)
    columns = ("e.facility_id, COALESCE(e.chain_seq, 0), CAST({payload} AS BLOB), "
               "CAST(COALESCE(e.chain_hash, '') AS BLOB)" if lean else
               "f.code, e.chain_seq, e.entry_id, {payload}, e.chain_hash, e.facility_id").format(payload=payload)
    return f"""
SELECT {columns}
FROM ledger_entry e
JOIN facility f ON f.id = e.facility_id
JOIN item i ON i.id = e.item_id
JOIN lot l ON l.id = e.lot_id
LEFT JOIN patient p ON p.id = e.patient_id
{where}
{order}
"""


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


FETCH = 50_000
"""Rows fetched from the driver at a time while verifying."""


def _rows(session: Session, *, ordered: bool = True, facility_ids: list[int] | None = None):
    """Stream (facility code, position, entry_id, canonical text, stored hash, facility id),
    through the driver's own cursor: a million rows must not cost a million SQLAlchemy row
    objects. ``ordered``: in chain order; otherwise in storage order (SQLite)."""
    raw = session.connection().connection.driver_connection
    dialect = session.get_bind().dialect.name
    cur = raw.cursor(name="dawa_verify") if dialect == "postgresql" else raw.cursor()
    try:
        cur.execute(_payload_sql(dialect, ordered=ordered, facility_ids=facility_ids))
        while batch := cur.fetchmany(FETCH):
            yield from batch
    finally:
        cur.close()


CHUNK = 50_000
"""Entries per query when SQLite's ledger is read in storage order."""
PARALLEL_FROM = 200_000
"""Entries from which a file database is read by worker processes (see ``chain_worker``)."""
WORKERS = min(max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 2), 8)
"""Worker processes reading a large file database: one per core this process may run on, at least
two and at most eight."""
_WORKER = str(Path(__file__).with_name("chain_worker.py"))


def _chunks(conn, sql: str, ranges: list[tuple[int, int]]):
    cur = conn.cursor()
    try:
        for lo, hi in ranges:
            yield cur.execute(sql, (lo, hi)).fetchall()
    finally:
        cur.close()


def _database_file(conn) -> str | None:
    """The file of a SQLite connection's main database; None when it is in memory."""
    for _seq, name, file in conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return file or None
    return None


def _storage_order_summaries(session: Session, wanted: dict[int, int]):
    """SQLite: every entry in storage (id) order, as one ``chain_worker.summarize`` per range of
    ids, in order. A large file database is read by worker processes, which both build and hash
    the rows: both cores work and neither waits for the other's interpreter. Otherwise this
    process reads, a helper thread a few ranges ahead of the hashing (the driver lets go of the
    interpreter while SQLite works).

    Only entries up to the largest id this session's snapshot sees are read, and entries are never
    changed once written and new ones take larger ids, so a worker's connection, which opens
    later, reads exactly the entries this session would."""
    raw = session.connection().connection.driver_connection
    lo, hi = raw.execute("SELECT min(id), max(id) FROM ledger_entry").fetchone()
    if hi is None:
        return
    ranges = [(a, min(a + CHUNK - 1, hi)) for a in range(lo, hi + 1, CHUNK)]
    sql = _payload_sql("sqlite", ordered=False, lean=True)
    path = _database_file(raw)
    if path is not None and _python() and hi - lo + 1 >= PARALLEL_FROM:
        yield from _worker_summaries(path, sql, ranges, wanted)
        return
    for rows in _ahead(_chunks(raw, sql, ranges)):
        yield summarize(rows, wanted)


def _python() -> str | None:
    """The interpreter to run workers with; None where this process was not started by one
    (a frozen application, a server that embeds Python), which then reads alone."""
    exe = sys.executable
    if not exe or getattr(sys, "frozen", False) or not Path(exe).name.lower().startswith("python"):
        return None
    return exe


def _worker_summaries(path: str, sql: str, ranges: list[tuple[int, int]], wanted: dict[int, int]):
    """``summarize`` of each range, in order, by WORKERS processes running ``chain_worker``, each
    given a new range as it hands one back and kept two ranges ahead, so that none waits. The
    workers are stopped whatever happens here: on an error, when the consumer stops early, on
    KeyboardInterrupt."""
    procs: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []
    results: queue.Queue = queue.Queue()
    finished = False
    try:
        for k in range(min(WORKERS, len(ranges))):
            proc = subprocess.Popen([_python(), "-I", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(proc)
            pickle.dump((path, sql, wanted), proc.stdin)
            reader = threading.Thread(target=_collect, args=(proc, results), name=f"dawa-verify-worker-{k}",
                                      daemon=True)
            reader.start()
            readers.append(reader)
        jobs = iter(enumerate(ranges))
        stopped: set[subprocess.Popen] = set()
        given = dict.fromkeys(procs, 0)  # ranges given and not yet handed back, per worker

        def give(proc: subprocess.Popen) -> None:
            """The next range to ``proc``, or once there is none, None: it stops after its last."""
            if proc in stopped:
                return
            job = next(jobs, None)
            if job is None:
                stopped.add(proc)
            else:
                given[proc] += 1
            pickle.dump(None if job is None else (job[0], *job[1]), proc.stdin)
            proc.stdin.flush()

        for proc in procs * 2:
            give(proc)
        done: dict[int, dict] = {}
        for n in range(len(ranges)):
            while n not in done:
                proc, message = results.get()
                if message[0] == "ok":
                    given[proc] -= 1
                    done[message[1]] = message[2]
                    give(proc)
                elif message[0] == "error":  # raised as if it had been raised here
                    _kind, exc, trace = message
                    exc.add_note(f"in a chain verification worker:\n{trace}")
                    raise exc
                elif not (message[0] == "exited" and proc in stopped and not given[proc]):
                    raise RuntimeError(f"a chain verification worker ended early: {message[1]}")
            yield done.pop(n)
        finished = True
    finally:
        for proc in procs:
            if not finished and proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in readers:
            reader.join()
        for proc in procs:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass


def _collect(proc: subprocess.Popen, results: queue.Queue) -> None:
    """Hand each message of a worker to the consumer, then the worker's end: an error unless
    it had handed back every range it was given and been told to stop."""
    try:
        while True:
            results.put((proc, pickle.load(proc.stdout)))
    except EOFError:
        results.put((proc, ("exited", f"it exited with code {proc.wait()}")))
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
        results.put((proc, ("lost", f"its answer could not be read ({exc!r})")))


_DONE = object()


def _ahead(batches, depth: int = 3):
    """Iterate ``batches`` in a helper thread, at most ``depth`` batches ahead of the consumer.
    Errors reach the consumer; a consumer that stops early stops the helper."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            for batch in batches:
                if stop.is_set():
                    break
                q.put(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            q.put(exc)
        finally:
            batches.close()
            q.put(_DONE)

    helper = threading.Thread(target=work, name="dawa-verify-read", daemon=True)
    helper.start()
    try:
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while helper.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        helper.join()


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
