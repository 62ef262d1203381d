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
(c) kill -9 (bench/crashes.py): `dawa import` of a generated data set (--scale), `dawa scan` of it,
    and a process posting transfers (each out-leg and in-leg in one batch), each killed with SIGKILL
    at a random moment once it holds a write transaction, --kills-* times; each kill is reported as
    landing inside a write transaction or outside one (before its first, after its commit). Held when what is left is all or nothing: no ledger entry or
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
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import httpx  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

import migrations  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402



def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, _HERE / file)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_web = _load("bench_web", "web.py")
crashes = _load("bench_crashes", "crashes.py")
consistent, count = crashes.consistent, crashes.count

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


# --- (a) one-unit dispenses ----------------------------------------------------------------------

def _run_threads(target, n: int) -> None:
    """``target(i)`` for i in range(n), each in a thread of its own, all started before any is awaited."""
    pool = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


def _status(send) -> int | str:
    """The status code of ``send()``'s answer, or the name of the error that left it without one."""
    try:
        return send().status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


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
        _run_threads(worker, threads)
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
    from web.admin.service import create_user

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
                status = _status(lambda: c.post("/api/v1/entries", json=body))
                with lock:
                    statuses[status] += 1

        _run_threads(client, n)
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
                    status = _status(lambda: c.post("/api/v1/entries", json={"entries": entries}))
                    with lock:
                        statuses[status] += 1

        _run_threads(client, workers)
    stored = count(url, select(func.count()).select_from(LedgerEntry).where(LedgerEntry.entry_id.like("load-%")))
    ok_db, detail = consistent(url)
    errors = sum(v for k, v in statuses.items() if not isinstance(k, int) or k >= 500)
    held = errors == 0 and statuses.get(201) == batches and stored == 3 * batches and ok_db
    return {"batches": batches, "workers": workers, "statuses": {str(k): v for k, v in statuses.items()},
            "server_errors_or_resets": errors, "stored": stored, "detail": detail, "held": held,
            "took": str(took)}


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
    args = ap.parse_args()
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
                results[f"kill -9 {kind}"] = crashes.bench_kills(dbs, kind, data, kills, rng)
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
