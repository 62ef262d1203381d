"""Crash figures, run from bench/concurrency.py: a process killed with SIGKILL in the middle of its
work leaves all of it or none. Also the checks both benchmarks make of a database afterwards, and
the child process that posts transfers to be killed (`python bench/crashes.py --transfer-child`).
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from stock import balances, chain  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402

DAWA = Path(sys.executable).with_name("dawa")


def consistent(url: str) -> tuple[bool, str]:
    """No drift between balances and ledger, no negative balance, and the chain verifies."""
    from stock.models import Balance

    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            drift = balances.drift(s)
            negative = s.scalar(select(func.count()).select_from(Balance).where(Balance.on_hand < 0))
            report = chain.verify(s)
        ok = not drift and not negative and report.ok
        return ok, f"drift {len(drift)}, negative balances {negative}, chain {'ok' if report.ok else 'BROKEN'}"
    finally:
        engine.dispose()


def count(url: str, stmt) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(stmt)
    finally:
        engine.dispose()


# --- (c) kill -9 -------------------------------------------------------------------------------

def in_transaction(url: str, app: str) -> bool:
    """Whether the process tagged ``app`` holds an open write transaction on ``url`` right now:
    on SQLite, whether the database's one write lock is taken (a BEGIN IMMEDIATE that may not
    wait fails); on PostgreSQL, whether a backend of that application_name is inside a transaction."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    admin = create_engine(url.split("?")[0])
    try:
        with admin.connect() as conn:
            return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a "
                                         "AND xact_start IS NOT NULL"), {"a": app}))
    finally:
        admin.dispose()


def _env(url: str, app: str) -> dict:
    return {**os.environ, "DAWA_DATABASE_URL": url, "DAWA_SECRET_KEY": secrets.token_urlsafe(32),
            "DAWA_PATIENT_ID_KEY": secrets.token_urlsafe(32), "PGAPPNAME": app}


def run_killed(args: list[str], url: str, rng: random.Random, window: float, *, wait_for_write: bool) -> str:
    """Run ``args`` over ``url``; once it holds a write transaction (``wait_for_write``; else at
    once), SIGKILL it a random moment within ``window`` seconds later. Says where the kill landed."""
    app = f"bench-kill-{os.getpid()}-{rng.randrange(10**9)}"
    proc = subprocess.Popen(args, env=_env(url, app), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if wait_for_write:
            while not in_transaction(url, app):
                if proc.poll() is not None:
                    return "finished before a write was seen"
                time.sleep(0.02)
        try:
            proc.wait(rng.uniform(0, window))
            return "finished"
        except subprocess.TimeoutExpired:
            pass
        inside = in_transaction(url, app)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return "killed inside a write transaction" if inside else "killed outside a transaction"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def timed_run(args: list[str], url: str) -> float:
    began = time.monotonic()
    subprocess.run(args, env=_env(url, "bench-run"), check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - began


def write_window(args: list[str], url: str) -> tuple[float, float]:
    """A full run of ``args``: its seconds, and the seconds from its first write transaction seen to its end."""
    app = f"bench-ref-{os.getpid()}"
    began = time.monotonic()
    proc = subprocess.Popen(args, env=_env(url, app), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while proc.poll() is None:
        if first is None and in_transaction(url, app):
            first = time.monotonic()
        time.sleep(0.02)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed")
    end = time.monotonic()
    return end - began, end - (first or began)


def bench_kills(dbs, kind: str, data: Path, kills: dict[str, int], rng: random.Random) -> dict:
    from anomaly.models import Flag, Scan
    from stock.models import LedgerEntry

    out: dict = {}
    entries = select(func.count()).select_from(LedgerEntry)
    # The reference: a full import and a full scan, for the counts and the run times to aim into.
    import_s = import_w = scan_s = scan_w = 0.0
    full_entries = full_flags = 0
    if kills["import"] or kills["scan"]:
        ref = dbs.fresh(kind)
        import_s, import_w = write_window([str(DAWA), "import", str(data), "-q"], ref)
        full_entries = count(ref, entries)
        scan_s, scan_w = write_window([str(DAWA), "scan", "-q"], ref) if kills["scan"] else (0.0, 0.0)
        full_flags = count(ref, select(func.count()).select_from(Flag))
        out["reference"] = {"entries": full_entries, "import_s": round(import_s, 1),
                            "import_writing_s": round(import_w, 1), "flags": full_flags, "scan_s": round(scan_s, 1),
                            "scan_writing_s": round(scan_w, 1)}

    def trials(n: int, prepare, command: list[str], window: float, judge, *, wait_for_write: bool = True) -> dict:
        seen: Counter = Counter()
        began = time.monotonic()
        if True:
            for _ in range(n):
                url = prepare()
                where = run_killed(command, url, rng, window, wait_for_write=wait_for_write)
                verdict, ok_db = judge(url), consistent(url)[0]
                seen[f"{where}: {verdict if ok_db else 'INCONSISTENT'}"] += 1
                print(f"  {kind} {command[-2] if command[-1] == '-q' else 'transfers'}: {where}: {verdict}", flush=True)
        return {"runs": n, "outcomes": dict(seen), "held": all("INCONSISTENT" not in k and "PARTIAL" not in k
                                                                 for k in seen),
                "took": f"{time.monotonic() - began:.1f} s wall"}

    def imported_or_not(url: str) -> str:
        got = count(url, entries)
        return "nothing" if got == 0 else "all" if got == full_entries else f"PARTIAL ({got})"

    if kills["import"]:
        out["import"] = trials(kills["import"], lambda: dbs.fresh(kind), [str(DAWA), "import", str(data), "-q"],
                               0.9 * import_w, imported_or_not)

    def imported() -> str:
        url = dbs.fresh(kind)
        timed_run([str(DAWA), "import", str(data), "-q"], url)
        return url

    def scanned_or_not(url: str) -> str:
        flags = count(url, select(func.count()).select_from(Flag))
        scans = count(url, select(func.count()).select_from(Scan))
        if flags == 0 and scans == 0:
            return "nothing"
        return "all" if flags == full_flags and scans == 1 else f"PARTIAL ({scans} scans, {flags} flags)"

    if kills["scan"]:
        out["scan"] = trials(kills["scan"], imported, [str(DAWA), "scan", "-q"], 0.9 * scan_w, scanned_or_not)

    def transferred_or_not(url: str) -> str:
        outs = count(url, entries.where(LedgerEntry.kind == "transfer_out", LedgerEntry.entry_id.like("T-%")))
        ins = count(url, entries.where(LedgerEntry.kind == "transfer_in", LedgerEntry.entry_id.like("T-%")))
        return f"{outs} whole transfers" if outs == ins else f"PARTIAL ({outs} out, {ins} in)"

    transfers = [sys.executable, str(Path(__file__).resolve()), "--transfer-child"]
    if kills["transfer"]:
        def world() -> str:
            url = dbs.fresh(kind)
            subprocess.run([*transfers, "--seed-only"], env={**os.environ, "DAWA_DATABASE_URL": url}, check=True)
            return url
        _total, transfer_w = write_window(transfers, world())
        out["transfer"] = trials(kills["transfer"], world, transfers, 0.9 * transfer_w, transferred_or_not)
    return out


TRANSFER_BATCHES = 300


def transfer_child(seed_only: bool) -> None:
    """Post transfers H1 -> HC2, each out-leg and in-leg in one batch and one commit, over
    DAWA_DATABASE_URL (killed by the parent at a random moment)."""
    from stock.ledger import post
    from tests.stock.builders import T0, build_world, entry

    engine = make_engine(os.environ["DAWA_DATABASE_URL"])
    Session = session_factory(engine)
    if seed_only:
        with Session() as s:
            build_world(s)
            post(s, entry("receipt", 10 * TRANSFER_BATCHES, item="INSG", lot="LT", entry_id="R-stock"))
            s.commit()
        return
    for i in range(TRANSFER_BATCHES):
        at = T0 + timedelta(minutes=i + 1)
        with Session() as s:
            post(s, [entry("transfer_out", 3, item="INSG", lot="LT", entry_id=f"T-{i}-out", at=at,
                           counterparty_code="HC2", document_number=f"TD-{i}"),
                     entry("transfer_in", 3, facility="HC2", item="INSG", lot="LT", entry_id=f"T-{i}-in", at=at,
                           counterparty_code="H1", document_number=f"TD-{i}")])
            s.commit()


if __name__ == "__main__" and "--transfer-child" in sys.argv:
    transfer_child("--seed-only" in sys.argv)
