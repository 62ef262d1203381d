"""Replenishment benchmarks, run by hand: a regional store's requisitions prepared from a large
ledger, and the reconciliation page.

    .venv/bin/python bench/requisitions.py [--rows 1000000] [--facilities 100] [--items 65]
                                           [--page-requests 40] [--workdir /tmp/dawa-bench-req]

A ledger of --rows rows over six months (Jan-Jun 2026) is written as the data contract's CSVs for
one regional store and --facilities health centres supplied by it, --items items each (a receipt
per facility and item, then dispensings; one pair in seven runs out for part of a month), and
imported by `dawa import`'s bulk path into SQLite. Then:

(a) every facility's June requisition is prepared from the ledger (stock.requisitions.prepare_all:
    opening, received, dispensed, losses, adjustments, closing, stockout days, AMC over three
    months) in one transaction, committed: total seconds and per facility. Target: < 5 s for
    100 facilities x 65 items from 1,000,000 rows.
(b) the requisitions are submitted, approved, and a third shipped (FEFO, through the ledger);
    the reconciliation page (/reconciliation, every line of the region) is requested
    --page-requests times after a warm-up by the region's manager through `dawa serve`:
    p50/p95. Target: p95 < 300 ms.

The database is cached in the work folder. The load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import csv
import resource
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import migrations  # noqa: E402
from bench.web import PASSWORD, Server, load_average, login, time_page  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402
from stock.importer import import_dataset  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPAN_S = 181 * 86400  # Jan 1 to Jul 1


def write_dataset(folder: Path, rows: int, facilities: int, items: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "facilities.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["code", "name", "region", "kind", "parent_code"])
        w.writerow(["REG-WH", "Regional store", "Bench", "warehouse", ""])
        for k in range(facilities):
            w.writerow([f"HC{k:03d}", f"Health centre {k}", "Bench", "health_center", "REG-WH"])
    with (folder / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["code", "name", "unit", "controlled"])
        for j in range(items):
            w.writerow([f"IT{j:02d}", f"Item {j}", "tablet", "false"])
    pairs = facilities * items
    per_pair = max(2, rows // pairs - 1)
    out = []
    n = 0
    for k in range(facilities):
        for j in range(items):
            times = np.sort(rng.integers(3600, SPAN_S, per_pair))
            qty = rng.integers(1, 10, per_pair)
            short = (k * items + j) % 7 == 0  # runs out mid-way, restocked a month later
            stock = int(qty.sum()) + (0 if short else 50)
            fac, item = f"HC{k:03d}", f"IT{j:02d}"
            out.append((0, f"r{n}", fac, "receipt", item, "", stock, ""))
            n += 1
            for t, q in zip(times.tolist(), qty.tolist()):
                out.append((t, f"d{n}", fac, "dispense", item, f"LY{n % 5000:010d}", q, ""))
                n += 1
    with (folder / "ledger.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["entry_id", "occurred_at", "facility_code", "kind", "item_code", "lot_number", "expiry_date",
                    "quantity", "health_card_id", "recorded_by"])
        for j in range(items):  # the store's own stock, to ship from
            w.writerow([f"s{j}", T0.isoformat(), "REG-WH", "receipt", f"IT{j:02d}", "S1", "2028-12-31",
                        1_000_000, "", "bench"])
        out.sort(key=lambda r: r[0])
        for t, eid, fac, kind, item, card, q, _ in out:
            w.writerow([eid, (T0 + timedelta(seconds=t)).isoformat(), fac, kind, item, "",
                        "", q, card, "bench"])


def build(workdir: Path, rows: int, facilities: int, items: int) -> Path:
    db = workdir / f"req-{rows}-{facilities}x{items}.sqlite"
    if db.exists():
        return db
    data = workdir / f"ds-{rows}-{facilities}x{items}"
    t = time.perf_counter()
    write_dataset(data, rows, facilities, items)
    print(f"data set written in {time.perf_counter() - t:.1f} s")
    engine = make_engine(f"sqlite:///{db}.tmp")
    migrations.upgrade(engine)
    t = time.perf_counter()
    with session_factory(engine)() as s:
        report = import_dataset(s, data)
        s.commit()
    print(f"imported in {time.perf_counter() - t:.1f} s: {report}"[:200])
    engine.dispose()
    Path(f"{db}.tmp").rename(db)
    return db


def bench_prepare(db: Path) -> None:
    from sqlalchemy import func, select

    from stock.models import Facility, LedgerEntry
    from stock.requisitions.models import RequisitionLine
    from stock.requisitions.prepare import prepare_all

    engine = make_engine(f"sqlite:///{db}")
    with session_factory(engine)() as s:
        rows = s.scalar(select(func.count()).select_from(LedgerEntry))
        facilities = list(s.scalars(select(Facility).where(Facility.parent_id.is_not(None)).order_by(Facility.code)))
        t = time.perf_counter()
        cpu = time.process_time()
        before = resource.getrusage(resource.RUSAGE_SELF)
        prepare_all(s, facilities, by="bench", period="2026-06", now=datetime(2026, 7, 2, tzinfo=timezone.utc))
        s.commit()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_SELF)
        lines = s.scalar(select(func.count()).select_from(RequisitionLine))
    # Preempted far more often than waiting for the disk: the wall time beyond the CPU time is
    # the time spent waiting for a core on a shared machine.
    print(f"(a) {len(facilities)} requisitions, {lines} lines, from {rows:,} ledger rows: {wall:.2f} s "
          f"({wall / len(facilities) * 1000:.0f} ms per facility; CPU {cpu:.2f} s; preempted "
          f"{after.ru_nivcsw - before.ru_nivcsw} times, waited {after.ru_nvcsw - before.ru_nvcsw} times) "
          f"— target < 5 s; load {load_average()}")
    engine.dispose()


def advance(db: Path) -> None:
    """Submit and approve every requisition, ship a third of them (FEFO through the ledger)."""
    from sqlalchemy import select

    from stock.requisitions import flow
    from stock.requisitions.fulfil import fulfil
    from stock.requisitions.models import Requisition

    engine = make_engine(f"sqlite:///{db}")
    with session_factory(engine)() as s:
        reqs = list(s.scalars(select(Requisition).where(Requisition.status == "draft").order_by(Requisition.id)))
        for k, req in enumerate(reqs):
            flow.submit(s, req, by="bench")
            flow.approve(s, req, [], by="bench")
            if k % 3 == 0:
                fulfil(s, req, by="bench")
        s.commit()
    engine.dispose()


def bench_page(db: Path, workdir: Path, n: int) -> None:
    from web.admin.service import create_user
    from stock.settings import WebSettings

    engine = make_engine(f"sqlite:///{db}")
    with session_factory(engine)() as s:
        from sqlalchemy import select

        from stock.models import User
        if s.scalar(select(User.id).where(User.username == "bench_region")) is None:
            create_user(s, "bench_region", "facility_manager", PASSWORD, region="Bench",
                        web=WebSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1))
            s.commit()
    engine.dispose()
    import httpx

    with Server(f"sqlite:///{db}", workdir) as server, httpx.Client(base_url=server.base_url, timeout=60) as c:
        login(c, "bench_region")
        p50, p95, size = time_page(c, "/reconciliation", n)
        lines = c.get("/reconciliation").text.count("<tr data-number=")
    print(f"(b) /reconciliation, {lines} lines ({size / 1024:.0f} KiB): p50 {p50 * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms — target p95 < 300 ms; load {load_average()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--facilities", type=int, default=100)
    ap.add_argument("--items", type=int, default=65)
    ap.add_argument("--page-requests", type=int, default=40)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench-req"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    built = build(args.workdir, args.rows, args.facilities, args.items)
    db = built.with_name("run-" + built.name)  # each run starts from the imported ledger alone
    shutil.copyfile(built, db)
    engine = make_engine(f"sqlite:///{db}")
    migrations.upgrade(engine)  # a database cached by an earlier version gets the current schema
    engine.dispose()
    bench_prepare(db)
    advance(db)
    bench_page(db, args.workdir, args.page_requests)


if __name__ == "__main__":
    main()
