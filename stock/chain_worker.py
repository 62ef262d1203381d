"""A worker process of ``chain.verify`` on a large SQLite file: reads ranges of the ledger and
checks each entry against the entry before it in the same range.

An entry's hash covers the previous entry's stored hash, so entries are checked independently of
each other given the one before: a range is checked on its own but for the first entry of each
facility in it, which ``verify`` checks against the range before. Workers use every core for
what one interpreter cannot: building each row (SQLite) and hashing it (Python).

Imports nothing but the standard library, so that a worker starts in milliseconds: ``chain`` runs
this file as a script, and ``summarize`` is shared with the single-process walk.

Protocol, pickled on the pipes: on stdin (database file, query, {facility id: wanted position}),
then (range number, first id, last id) per range and None to stop; on stdout ("ok", range number,
summary) per range, or ("error", exception, traceback text) once before exiting.
"""

from __future__ import annotations

import hashlib
import pickle
import signal
import sqlite3
import sys
import traceback
from urllib.parse import quote


def summarize(rows, wanted: dict[int, int]) -> dict[int, tuple]:
    """One range's rows (facility id, position, "\\x1e" + version + separator + canonical text,
    stored hash; text and hash as bytes), in storage order, as facility id -> (first position, its
    text, its stored hash, last position, last stored hash, sound, stored hash at the wanted
    position or None).

    ``sound``: every entry of the facility after its first in the range has the next position and
    a hash that matches its text and the stored hash before it. The first entry is left to the
    caller, who knows the hash it must follow."""
    sha = hashlib.sha256
    seqs: dict[int, int] = {}
    hashes: dict[int, bytes] = {}
    first: dict[int, tuple] = {}
    broken: set[int] = set()
    for facility_id, seq, payload, stored in rows:
        last = hashes.get(facility_id)
        if last is None:
            first[facility_id] = (seq, payload, stored)
        elif (seq != seqs[facility_id] + 1 or payload is None
              or sha(last + payload).hexdigest().encode() != stored):
            broken.add(facility_id)
        seqs[facility_id] = seq
        hashes[facility_id] = stored
    at: dict[int, bytes] = {}
    if wanted:
        for facility_id, seq, _payload, stored in rows:
            if wanted.get(facility_id) == seq:
                at[facility_id] = stored
    return {fid: (*first[fid], seqs[fid], hashes[fid], fid not in broken, at.get(fid)) for fid in first}


def main() -> int:
    # Ctrl-C at a terminal reaches the whole process group: the caller stops the workers itself,
    # so that it raises KeyboardInterrupt and not the error of a worker gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        path, sql, wanted = pickle.load(stdin)
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA cache_size=-65536")
        # Read the file through memory mapping: pages are not copied into the cache first. Only
        # address space, and only for reading; a query is the same with it or without.
        conn.execute(f"PRAGMA mmap_size={1 << 30}")
        while (job := pickle.load(stdin)) is not None:
            number, lo, hi = job
            summary = summarize(conn.execute(sql, (lo, hi)).fetchall(), wanted)
            pickle.dump(("ok", number, summary), stdout, protocol=pickle.HIGHEST_PROTOCOL)
            stdout.flush()
        conn.close()
    except (BrokenPipeError, EOFError):
        return 1  # the caller stopped or went away: nobody to tell
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, who raises it
        trace = traceback.format_exc()
        try:
            message = pickle.dumps(("error", exc, trace))
            pickle.loads(message)  # the caller must be able to rebuild it
        except Exception:  # noqa: BLE001 - then the text of it
            message = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}"), trace))
        try:
            stdout.write(message)
            stdout.flush()
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
