"""Concurrency and crash figures, run by hand: what the ledger keeps when many writers race and when
a process is killed in the middle of its work.

    .venv/bin/python bench/concurrency.py [--dispenses 20000] [--pg-dispenses 10000] [--threads 16]
        [--reposts 100] [--kills-import 16] [--kills-scan 7] [--kills-transfer 4] [--scale 0.05]
        [--batches 2000] [--workers 4] [--skip-postgres] [--workdir /tmp/dawa-bench-concurrency]

(a) One-unit dispenses: --threads threads, each with its own session and a commit per dispense (as
    a web request does), race for one lot holding half as many units as there are attempts. Held
    when exactly the stock is dispensed, every other attempt is refused for insufficient stock, no
    other error, the balance ends at 0 and never goes negative, the balances match the ledger (no
    drift) and the chain verifies. On SQLite (--dispenses) and PostgreSQL (--pg-dispenses).
(b) Re-posts: --reposts clients post one and the same entry through `dawa serve`'s API at once.
    Held when one row is stored and every answer is a success (201 once, 200 for the rest).
(c) kill -9: `dawa import` of a generated data set (--scale), `dawa scan` of it, and a process
    posting transfers (each out-leg and in-leg in one batch), each killed with SIGKILL at a random
    moment of its run, --kills-* times. Held when what is left is all or nothing: no ledger entry or
    every one, no flag or every flag of a finished scan, both legs of a transfer or neither; and
    the balances match the ledger and the chain verifies.
(d) Batch load on PostgreSQL: `dawa serve --workers` --workers, as many client threads, --batches
    batches of three receipts naming three facilities in random order. Held when no answer is a
    server error (5xx) or a reset, and every entry is stored once.

Everything runs on 127.0.0.1 (PostgreSQL: user postgres on port 5432, in a scratch schema of the
database named by --pg-database, dropped afterwards). Wall and CPU time (user + system of this
process and its children) are printed with each figure, and the load average: on a busy machine
timings are upper bounds, the held/failed findings are not.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import httpx  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

import migrations  # noqa: E402
from stock import balances, chain  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_web", _HERE / "web.py")
bench_web = sys.modules["bench_web"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_web)

DAWA = Path(sys.executable).with_name("dawa")


def cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.monotonic(), cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.monotonic() - self.wall, cpu() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.1f} s wall, {self.cpu:.1f} s CPU (this process and its children)"


# --- databases ---------------------------------------------------------------------------------

class Databases:
    """Fresh databases: SQLite files in the work folder, PostgreSQL schemas in one database."""

    def __init__(self, workdir: Path, pg_database: str | None):
        self.workdir, self.pg_database, self.schemas, self.n = workdir, pg_database, [], 0

    def fresh(self, kind: str) -> str:
        self.n += 1
        if kind == "sqlite":
            path = self.workdir / f"db-{self.n}.sqlite"
            for f in self.workdir.glob(path.name + "*"):
                f.unlink()
            url = f"sqlite:///{path}"
        else:
            schema = f"bench_conc_{os.getpid()}_{self.n}"
            admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.pg_database}")
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            admin.dispose()
            self.schemas.append(schema)
            url = (f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.pg_database}"
                   f"?options=-csearch_path%3D{schema}")
        engine = make_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        return url

    def drop_all(self) -> None:
        if not self.schemas:
            return
        admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.pg_database}")
        for schema in self.schemas:  # one transaction each: a schema's tables take many locks
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
        self.schemas = []


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


# --- (a) one-unit dispenses ----------------------------------------------------------------------

def bench_dispenses(url: str, attempts: int, threads: int) -> dict:
    from stock.errors import InsufficientStock
    from stock.ledger import post
    from stock.models import Balance, LedgerEntry
    from tests.stock.builders import T0, build_world, entry

    stock = attempts // 2
    engine = make_engine(url, pool_size=threads, max_overflow=0)
    Session = session_factory(engine)
    with Session() as s:
        build_world(s)
        post(s, entry("receipt", stock, entry_id="R-stock"))
        s.commit()
    outcome: Counter = Counter()
    others: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        start.wait()
        for i in range(t, attempts, threads):
            with Session() as s:
                try:
                    post(s, entry("dispense", 1, entry_id=f"D-{i}", at=T0 + timedelta(minutes=1)))
                    s.commit()
                    result = "dispensed"
                except InsufficientStock:
                    s.rollback()
                    result = "refused"
                except Exception as exc:  # noqa: BLE001 - any other failure is the finding
                    s.rollback()
                    result = "error"
                    with lock:
                        others.append(f"{type(exc).__name__}: {exc}"[:200])
            with lock:
                outcome[result] += 1

    with Timer() as took:
        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    with Session() as s:
        on_hand = s.scalar(select(Balance.on_hand))
        dispensed = -s.scalar(select(func.sum(LedgerEntry.effect)).where(LedgerEntry.kind == "dispense"))
    engine.dispose()
    ok_db, detail = consistent(url)
    held = outcome["dispensed"] == stock == dispensed and on_hand == 0 and not others and ok_db
    return {"attempts": attempts, "stock": stock, "threads": threads, "outcome": dict(outcome),
            "dispensed": dispensed, "on_hand": on_hand, "errors": others[:3], "detail": detail,
            "held": held, "took": str(took)}


# --- (b) re-posts, (d) batch load: through `dawa serve` ------------------------------------------

def api_token(url: str, username: str, role: str, facility: str | None) -> str:
    from stock.settings import get_settings
    from web import auth
    from web.cli_web import create_user

    web = get_settings().web.model_copy(update={"argon2_time_cost": 1, "argon2_memory_kib": 1024,
                                                "argon2_parallelism": 1})
    engine = make_engine(url)
    with session_factory(engine)() as s:
        user = create_user(s, username, role, "bench-password-" + "x" * 12, facility=facility, web=web)
        token = auth.issue_api_token(s, user, "bench")[0]
        s.commit()
    engine.dispose()
    return token


def bench_reposts(url: str, workdir: Path, n: int) -> dict:
    from stock.ledger import post
    from stock.models import LedgerEntry
    from tests.stock.builders import build_world, entry

    engine = make_engine(url)
    with session_factory(engine)() as s:
        build_world(s)
        post(s, entry("receipt", 1000, entry_id="R-stock"))
        s.commit()
    engine.dispose()
    token = api_token(url, "bench_admin", "admin", None)
    body = {"entries": [{"entry_id": "SAME-1", "kind": "dispense", "facility_code": "H1", "item_code": "MOR10",
                         "lot_number": "L1", "quantity": 1, "health_card_id": "LY0000000001",
                         "prescription_id": "RX1", "occurred_at": "2026-03-01T10:00:00+02:00"}]}
    statuses: Counter = Counter()
    lock = threading.Lock()
    with Timer() as took, bench_web.Server(url, workdir, workers=2) as server:
        start = threading.Barrier(n)

        def client(_i: int) -> None:
            with httpx.Client(base_url=server.base_url, timeout=120,
                              headers={"Authorization": f"Bearer {token}"}) as c:
                start.wait()
                try:
                    status = c.post("/api/v1/entries", json=body).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[status] += 1

        pool = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    rows = count(url, select(func.count()).select_from(LedgerEntry).where(LedgerEntry.entry_id == "SAME-1"))
    ok_db, detail = consistent(url)
    held = rows == 1 and statuses.get(201) == 1 and statuses.get(200) == n - 1 and ok_db
    return {"clients": n, "statuses": dict(statuses), "rows": rows, "detail": detail, "held": held,
            "took": str(took)}


def bench_batches(url: str, workdir: Path, batches: int, workers: int) -> dict:
    import itertools

    from stock.models import LedgerEntry
    from tests.stock.builders import build_world

    engine = make_engine(url)
    with session_factory(engine)() as s:
        build_world(s)
        from stock.masterdata import add_facility

        add_facility(s, "B1", "Benghazi Medical Centre", "Benghazi", "hospital")
        s.commit()
    engine.dispose()
    token = api_token(url, "bench_admin", "admin", None)
    orders = list(itertools.permutations(["H1", "HC2", "B1"]))
    statuses: Counter = Counter()
    lock = threading.Lock()
    with Timer() as took, bench_web.Server(url, workdir, workers=workers) as server:
        def client(w: int) -> None:
            rng = random.Random(w)
            with httpx.Client(base_url=server.base_url, timeout=120,
                              headers={"Authorization": f"Bearer {token}"}) as c:
                for n in range(w, batches, workers):
                    entries = [{"entry_id": f"load-{n}-{k}", "occurred_at": "2026-03-05T10:00:00+02:00",
                                "facility_code": fac, "kind": "receipt", "item_code": "INSG", "lot_number": "LB",
                                "quantity": 1, "expiry_date": "2028-01-31"}
                               for k, fac in enumerate(rng.choice(orders))]
                    try:
                        status = c.post("/api/v1/entries", json={"entries": entries}).status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    with lock:
                        statuses[status] += 1

        pool = [threading.Thread(target=client, args=(w,)) for w in range(workers)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    stored = count(url, select(func.count()).select_from(LedgerEntry).where(LedgerEntry.entry_id.like("load-%")))
    ok_db, detail = consistent(url)
    errors = sum(v for k, v in statuses.items() if not isinstance(k, int) or k >= 500)
    held = errors == 0 and statuses.get(201) == batches and stored == 3 * batches and ok_db
    return {"batches": batches, "workers": workers, "statuses": {str(k): v for k, v in statuses.items()},
            "server_errors_or_resets": errors, "stored": stored, "detail": detail, "held": held,
            "took": str(took)}


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


def bench_kills(dbs: Databases, kind: str, data: Path, kills: dict[str, int], rng: random.Random) -> dict:
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
        with Timer() as took:
            for _ in range(n):
                url = prepare()
                where = run_killed(command, url, rng, window, wait_for_write=wait_for_write)
                verdict, ok_db = judge(url), consistent(url)[0]
                seen[f"{where}: {verdict if ok_db else 'INCONSISTENT'}"] += 1
                print(f"  {kind} {command[-2] if command[-1] == '-q' else 'transfers'}: {where}: {verdict}", flush=True)
        return {"runs": n, "outcomes": dict(seen), "held": all("INCONSISTENT" not in k and "PARTIAL" not in k
                                                                 for k in seen), "took": str(took)}

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


# --- main --------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dispenses", type=int, default=20000)
    ap.add_argument("--pg-dispenses", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--reposts", type=int, default=100)
    ap.add_argument("--kills-import", type=int, default=16)
    ap.add_argument("--kills-scan", type=int, default=7)
    ap.add_argument("--kills-transfer", type=int, default=4)
    ap.add_argument("--kill-databases", default="sqlite,postgresql")
    ap.add_argument("--scale", type=float, default=0.05, help="size of the data set imported and scanned")
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--pg-database", default="test")
    ap.add_argument("--only", default="dispenses,reposts,kills,batches")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench-concurrency"))
    ap.add_argument("--transfer-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.transfer_child:
        return transfer_child(args.seed_only)
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    kinds = ["sqlite"] + ([] if args.skip_postgres else ["postgresql"])
    dbs = Databases(args.workdir, None if args.skip_postgres else args.pg_database)
    results: dict = {"load average": bench_web.load_average()}
    rng = random.Random(1)
    try:
        for kind in kinds:
            if "dispenses" in only:
                n = args.dispenses if kind == "sqlite" else args.pg_dispenses
                results[f"dispenses {kind}"] = bench_dispenses(dbs.fresh(kind), n, args.threads)
                print(kind, "dispenses", results[f"dispenses {kind}"], flush=True)
            if "reposts" in only:
                results[f"reposts {kind}"] = bench_reposts(dbs.fresh(kind), args.workdir, args.reposts)
                print(kind, "reposts", results[f"reposts {kind}"], flush=True)
            if "kills" in only and kind in args.kill_databases.split(","):
                data = args.workdir / f"data-{args.scale}"
                if not data.exists():
                    subprocess.run([str(DAWA), "sample-data", str(data), "--scale", str(args.scale)], check=True,
                                   stdout=subprocess.DEVNULL)
                kills = {"import": args.kills_import, "scan": args.kills_scan, "transfer": args.kills_transfer}
                results[f"kill -9 {kind}"] = bench_kills(dbs, kind, data, kills, rng)
                print(kind, "kill -9", results[f"kill -9 {kind}"], flush=True)
            if "batches" in only and kind == "postgresql":
                results["batches postgresql"] = bench_batches(dbs.fresh(kind), args.workdir, args.batches,
                                                              args.workers)
                print(kind, "batches", results["batches postgresql"], flush=True)
    finally:
        dbs.drop_all()
    results["load average after"] = bench_web.load_average()
    print()
    for name, figures in results.items():
        print(f"{name}: {figures}")
    held = all(f.get("held", True) for f in results.values() if isinstance(f, dict)
               ) and all(v.get("held", True) for f in results.values() if isinstance(f, dict)
                         for v in f.values() if isinstance(v, dict))
    print("ALL HELD" if held else "SOMETHING FAILED")
    sys.exit(0 if held else 1)


if __name__ == "__main__":
    main()
