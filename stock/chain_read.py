"""Reading the ledger to verify its chains: the query in which the database writes each entry's
canonical text, streamed through the driver, and on SQLite the storage-order reading by ranges,
in worker processes for a large file database."""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy.orm import Session

from stock.canonical import payload_sql
from stock.chain_worker import summarize


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

