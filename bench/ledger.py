"""Ledger benchmarks, run by hand: import, verify and stock-on-hand latency.

    .venv/bin/python bench/ledger.py [--rows 1000000] [--workdir /tmp/dawa-bench]

Prints figures and side-by-side ratios measured in the same run:
- import of N ledger rows into SQLite (rows/s) against plain sqlite3 executemany of the same rows
  into a bare table with the same columns (target: >= 100,000 rows/s and a ratio >= 0.3).
  The import is the whole `dawa import` of a generated data set into a fresh database: master
  data (facilities, items, and the patients and prescriptions that go with N ledger rows) and
  then the ledger, one transaction, commit included. "import rows/s" is ledger rows divided by
  that whole time. The ledger phase alone (reading ledger.csv to the end of the import, before
  the commit) is reported apart, and so are CPU seconds: other jobs on the machine slow wall
  time, which the load average printed beside the figures shows;
  Diagnostic lines beside it insert the rows as the import stored them (the ledger table's 21
  columns: resolved ids, hashes, timestamps), bound as the import binds them: into a bare table
  the same way, and into a fresh table with the ledger's own schema, building its indexes and
  committing. The last is the floor: what SQLite alone takes for any import into this schema,
  before any reading, checking or hashing, and without master data;
- `ledger verify` (target: >= 200,000 rows/s);
- stock on hand for one facility at 10,000 and at N ledger rows (target: p95 within 1.5x).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import migrations  # noqa: E402
from sample_data.generator import generate  # noqa: E402
from stock import chain  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402
from stock.importer import import_dataset  # noqa: E402
from stock.queries import on_hand  # noqa: E402


def dataset(workdir: Path, rows: int) -> Path:
    """A generated data set with at least ``rows`` ledger rows, cut to exactly ``rows``."""
    out = workdir / f"ds-{rows}"
    if (out / "ledger.csv").exists():
        return out
    full = workdir / "generated"
    if full.exists():
        shutil.rmtree(full)
    scale = max(rows / 70_000, 0.05)
    while True:
        summary = generate(full, seed=7, scale=scale)
        if summary.ledger_rows >= rows:
            break
        scale *= 1.3 * rows / summary.ledger_rows
    out.mkdir(parents=True, exist_ok=True)
    for f in full.iterdir():
        if f.name != "ledger.csv":
            shutil.copy(f, out / f.name)
    cut(full / "ledger.csv", out / "ledger.csv", rows)
    return out


def cut(src: Path, dst: Path, rows: int) -> None:
    """The first ``rows`` rows: ledger.csv is in occurred_at order, so a prefix is a valid ledger."""
    with src.open(encoding="utf-8") as fin, dst.open("w", encoding="utf-8") as fout:
        for i, line in enumerate(fin):
            if i > rows:
                break
            fout.write(line)


def fresh_db(path: Path):
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    engine = make_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    return engine


@dataclass
class ImportRun:
    seconds: float          # the whole import: master data, ledger, commit
    ledger_seconds: float   # reading ledger.csv to the end of the import, commit excluded
    cpu_seconds: float
    rows: int
    master_rows: int
    engine: object


def bench_import(ds: Path, db: Path) -> ImportRun:
    engine = fresh_db(db)
    marks: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        marks.setdefault(phase, time.perf_counter())

    cpu, t = time.process_time(), time.perf_counter()
    with session_factory(engine)() as s:
        report = import_dataset(s, ds, progress=progress)
        end = time.perf_counter()
        s.commit()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    ledger = end - marks.get("reading ledger.csv", t)
    master = report.facilities + report.items + report.patients + report.prescriptions
    return ImportRun(elapsed, ledger, cpu, report.entries_added, master, engine)


def bare_insert(db: Path, columns: list[str], rows: list[tuple], values: str | None = None) -> tuple[float, float, int]:
    """Plain sqlite3 executemany of ``rows`` into a fresh bare table of ``columns``, one transaction
    (``values``: the VALUES list, one ? per column unless given)."""
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(f"CREATE TABLE ledger ({', '.join(columns)})")
    cpu, t = time.process_time(), time.perf_counter()
    con.execute("BEGIN")
    con.executemany(f"INSERT INTO ledger VALUES ({values or ', '.join('?' * len(columns))})", rows)
    con.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    con.close()
    return elapsed, cpu, len(rows)


def bench_bare(ds: Path, db: Path) -> tuple[float, float, int]:
    """Plain sqlite3 executemany of the same rows into a bare table with the same columns."""
    with (ds / "ledger.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [tuple(r) for r in reader]
    return bare_insert(db, [h + " TEXT" for h in header], rows)


def stored_rows(engine) -> tuple[list[str], str, list[tuple]]:
    """The ledger table's columns (but id), the VALUES list the import inserts them with (NULLIF(?, '')
    for a nullable column) and its rows as the import hands them to the driver ('' for NULL, see
    stock.bulk.null_value), in storage order."""
    with engine.connect() as conn:
        info = [r for r in conn.exec_driver_sql("PRAGMA table_info(ledger_entry)") if r[1] != "id"]
        cols = [r[1] for r in info]
        nullable = {r[1] for r in info if not r[3]}
        read = [f"IFNULL({c}, '')" if c in nullable else c for c in cols]
        rows = conn.exec_driver_sql(f"SELECT {', '.join(read)} FROM ledger_entry ORDER BY id").fetchall()
    values = ", ".join("NULLIF(?, '')" if c in nullable else "?" for c in cols)
    return cols, values, [tuple(r) for r in rows]


def bench_bare_stored(cols: list[str], values: str, rows: list[tuple], db: Path) -> tuple[float, float, int]:
    """Diagnostic, not the target's baseline: plain executemany of the rows as the import stores
    them (ids resolved, hashes, timestamps as text: the ledger table's columns) into a bare table
    with those columns and no constraint or index, bound as the import binds them. Set against
    the baseline, it tells how much of the gap is the stored rows' shape."""
    return bare_insert(db, cols, rows, values)


def bench_floor(engine, cols: list[str], values: str, rows: list[tuple], db: Path) -> tuple[float, float, int]:
    """Diagnostic: the least any import into the ledger's schema can take in SQLite. The stored
    rows go into a fresh table with the ledger's own DDL (constraints, the same pragmas as the
    application's connections), bound as the import binds them; then the ledger's indexes are
    built (as a large import rebuilds them) and the transaction commits. No Python work at all:
    no reading, checking, simulating or hashing, no master data."""
    with engine.connect() as conn:
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ledger_entry'").scalar()
        indexes = [r[0] for r in conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger_entry' AND sql IS NOT NULL")]
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    floor = make_engine(f"sqlite:///{db}")
    with floor.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute(ddl)
        raw.execute("PRAGMA foreign_keys=OFF")  # as in the import's transaction (stock.db.FOREIGN_KEYS_OFF)
        cpu, t = time.process_time(), time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(f"INSERT INTO ledger_entry ({', '.join(cols)}) VALUES ({values})", rows)
        for sql in indexes:
            raw.execute(sql)
        raw.execute("COMMIT")
        elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    floor.dispose()
    return elapsed, cpu, len(rows)


def bench_verify(engine) -> tuple[float, float, int]:
    """`dawa ledger verify` over the whole ledger; CPU seconds count every thread of the process
    and of the worker processes it reads a large ledger with (they have ended when it returns)."""
    import resource

    def cpu_s() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    with session_factory(engine, read_only=True)() as s:
        cpu, t = cpu_s(), time.perf_counter()
        report = chain.verify(s)
        elapsed, cpu = time.perf_counter() - t, cpu_s() - cpu
    assert report.ok, report.breaks[:3]
    return elapsed, cpu, report.entries


def bench_on_hand(engine, facility: str, repeat: int = 300) -> tuple[float, float]:
    Session = session_factory(engine, read_only=True)
    times = []
    for _ in range(repeat):
        with Session() as s:
            t = time.perf_counter()
            on_hand(s, facility_code=facility)
            times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times), times[int(0.95 * len(times)) - 1]


def busiest_facility(ds: Path) -> str:
    counts: dict[str, int] = {}
    with (ds / "ledger.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            counts[row["facility_code"]] = counts.get(row["facility_code"], 0) + 1
    return max(counts, key=counts.get)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    big, small = dataset(args.workdir, args.rows), dataset(args.workdir, args.small)
    print(f"data sets ready: {big} and {small}", flush=True)

    load_before = os.getloadavg()
    bare_s, bare_cpu, bare_n = bench_bare(big, args.workdir / "bare.sqlite")
    imp = bench_import(big, args.workdir / "big.sqlite")
    ver_s, ver_cpu, ver_n = bench_verify(imp.engine)
    cols, values, rows = stored_rows(imp.engine)
    stored_s, stored_cpu, stored_n = bench_bare_stored(cols, values, rows, args.workdir / "bare-stored.sqlite")
    floor_s, floor_cpu, floor_n = bench_floor(imp.engine, cols, values, rows, args.workdir / "floor.sqlite")
    del rows
    small_run = bench_import(small, args.workdir / "small.sqlite")
    facility = busiest_facility(small)
    small_p50, small_p95 = bench_on_hand(small_run.engine, facility)
    big_p50, big_p95 = bench_on_hand(imp.engine, facility)
    load_after = os.getloadavg()

    imp_rate, bare_rate = imp.rows / imp.seconds, bare_n / bare_s
    print()
    print(f"load average (1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} on {os.cpu_count()} cores")
    print(f"{'measure':<52}{'figure':>12}{'target':>14}{'CPU s':>9}")
    print(f"{'import into SQLite, whole (ledger rows/s)':<52}{imp_rate:>12,.0f}{'>= 100,000':>14}{imp.cpu_seconds:>9.1f}")
    print(f"{'  ' + format(imp.rows, ',') + ' ledger rows + ' + format(imp.master_rows, ',') + ' master rows, s':<52}"
          f"{imp.seconds:>12.1f}")
    print(f"{'  ledger phase alone (ledger rows/s)':<52}{imp.rows / imp.ledger_seconds:>12,.0f}")
    print(f"{'plain sqlite3 executemany, bare table (rows/s)':<52}{bare_rate:>12,.0f}{'':>14}{bare_cpu:>9.1f}")
    print(f"{'ratio import / bare executemany':<52}{imp_rate / bare_rate:>12.2f}{'>= 0.30':>14}")
    print(f"{'ratio ledger phase / bare executemany':<52}{imp.rows / imp.ledger_seconds / bare_rate:>12.2f}")
    print(f"{'  diagnostic: bare executemany of the stored rows':<52}{stored_n / stored_s:>12,.0f}{'':>14}{stored_cpu:>9.1f}")
    print(f"{'  diagnostic: ratio ledger phase / that':<52}{imp.rows / imp.ledger_seconds / (stored_n / stored_s):>12.2f}")
    print(f"{'  floor: stored rows into the ledger schema (rows/s)':<52}{floor_n / floor_s:>12,.0f}{'':>14}{floor_cpu:>9.1f}")
    print(f"{'    insert, build its indexes, commit: s':<52}{floor_s:>12.1f}")
    print(f"{'    ratio floor / bare executemany':<52}{floor_n / floor_s / bare_rate:>12.2f}")
    print(f"{'ledger verify (rows/s)':<52}{ver_n / ver_s:>12,.0f}{'>= 200,000':>14}{ver_cpu:>9.1f}")
    print(f"{'on hand, ' + facility + ', ' + format(args.small, ',') + ' rows: p50 / p95 (ms)':<52}"
          f"{small_p50 * 1e3:>5.2f} / {small_p95 * 1e3:>4.2f}")
    print(f"{'on hand, ' + facility + ', ' + format(imp.rows, ',') + ' rows: p50 / p95 (ms)':<52}"
          f"{big_p50 * 1e3:>5.2f} / {big_p95 * 1e3:>4.2f}")
    print(f"{'ratio of p95 (large / small)':<52}{big_p95 / small_p95:>12.2f}{'<= 1.5':>14}")


if __name__ == "__main__":
    main()
