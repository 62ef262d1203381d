"""Scan benchmark, run by hand: `anomaly.scan.run` with every available detector at two sizes.

    .venv/bin/python bench/scan.py [--scales 1.4 14] [--seed 7] [--workdir /tmp/dawa-bench-scan]

Generates data sets of about 100,000 and 1,000,000 ledger rows (cached in the work folder with
their imported SQLite databases), then scans each in a fresh child process so that its peak
memory (ru_maxrss) is the scan's own and not the generator's or the importer's. The scan runs in
a transaction that is rolled back, so the cached database stays as imported and the next run
scans exactly the same thing.

Prints, per size: rows, seconds per phase and detector (ScanReport.seconds), total seconds, the
one-off cost of loading the detectors' libraries in a new process (shown apart: a scheduler pays
it once at start, not per scan), peak memory; then the ratio of time per row at the large size to time per row at the small one (cost
must grow no worse than linearly: ratio <= 1). Targets: 100k rows <= 8 s, 1M rows <= 60 s on
2 cores. The machine's load average is printed with the figures: timings on a busy machine are
upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {100_000: 8.0, 1_000_000: 60.0}
"""Nominal size -> seconds allowed for a full scan."""


def _peak_mib() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def child_scan(db: Path) -> dict:
    """Scan ``db`` once with every available detector and roll back; runs in its own process."""
    from sqlalchemy import func, select

    from anomaly import detectors, scan
    from stock.db import make_engine, session_factory
    from stock.models import LedgerEntry

    # Loading the detectors (scikit-learn and SciPy above all) is paid once per process, by the
    # scheduler at its start, not by each scan: it is measured apart.
    t = time.perf_counter()
    detectors.available()
    imports = time.perf_counter() - t
    engine = make_engine(f"sqlite:///{db}")
    with session_factory(engine)() as s:
        rows = s.scalar(select(func.count()).select_from(LedgerEntry))
        before = _peak_mib()
        t = time.perf_counter()
        report = scan.run(s, force=True)
        total = time.perf_counter() - t
        peak = _peak_mib()
        s.rollback()
    engine.dispose()
    return {"rows": rows, "total": total, "seconds": report.seconds, "hits": report.hits,
            "flags": report.flags_total, "detectors": detectors.available(),
            "peak_mib": peak, "peak_before_scan_mib": before, "imports": imports}


def prepare(workdir: Path, seed: int, scale: float) -> tuple[Path, int]:
    """The cached data set and its imported database, made on first use."""
    import migrations
    from sample_data.generator import generate
    from stock.db import make_engine, session_factory
    from stock.importer import import_dataset

    folder = workdir / f"seed{seed}-scale{scale:g}"
    data, db, done = folder / "data", folder / "dawa.sqlite", folder / "imported.json"
    if done.exists():
        engine = make_engine(f"sqlite:///{db}")
        try:
            if migrations.is_current(engine):
                return db, json.loads(done.read_text())["rows"]
        finally:
            engine.dispose()
        print(f"{db}: schema out of date, importing again", flush=True)
    if not (data / "truth.csv").exists():
        t = time.perf_counter()
        summary = generate(data, seed=seed, scale=scale)
        print(f"generated {data}: {summary.ledger_rows:,} ledger rows in {time.perf_counter() - t:.0f} s",
              flush=True)
    for old in folder.glob("dawa.sqlite*"):
        old.unlink()
    engine = make_engine(f"sqlite:///{db}")
    migrations.upgrade(engine)
    t = time.perf_counter()
    with session_factory(engine)() as s:
        report = import_dataset(s, data)
        s.commit()
    engine.dispose()
    print(f"imported {report.entries_added:,} rows into {db} in {time.perf_counter() - t:.0f} s", flush=True)
    done.write_text(json.dumps({"rows": report.entries_added}))
    return db, report.entries_added


def prepare_child(workdir: Path, seed: int, scale: float) -> tuple[Path, int]:
    out = subprocess.run([sys.executable, __file__, "--workdir", str(workdir), "--seed", str(seed),
                          "--prepare", str(scale)], check=True, stdout=subprocess.PIPE, text=True)
    lines = out.stdout.strip().splitlines()
    if len(lines) > 1:
        print("\n".join(lines[:-1]), flush=True)
    done = json.loads(lines[-1])
    return Path(done["db"]), done["rows"]


def run_child(db: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(db)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _target(rows: int) -> tuple[int, float]:
    """The nominal size a data set stands for (the nearer target, on a log scale)."""
    import math

    return min(TARGETS.items(), key=lambda kv: abs(math.log(rows / kv[0])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.4, 14.0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench-scan"))
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_scan(args.child)))
        return
    if args.prepare is not None:
        db, rows = prepare(args.workdir, args.seed, args.prepare)
        print(json.dumps({"db": str(db), "rows": rows}))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    # Generating and importing happen in child processes too: Linux carries a process's peak
    # resident size across fork and exec, so a parent that had grown would inflate every scan's.
    dbs = [prepare_child(args.workdir, args.seed, scale) for scale in args.scales]
    load_before = os.getloadavg()
    results = []
    for (db, _rows), scale in zip(dbs, args.scales):
        print(f"scanning {db} ...", flush=True)
        results.append((scale, run_child(db)))
    load_after = os.getloadavg()

    print()
    print(f"cores: {os.cpu_count()}; load average (1, 5, 15 min) before: "
          f"{', '.join(f'{x:.2f}' for x in load_before)}; after: {', '.join(f'{x:.2f}' for x in load_after)}")
    print(f"detectors: {', '.join(results[0][1]['detectors'])}")
    phases = list(dict.fromkeys(k for _s, r in results for k in r["seconds"]))
    head = [f"scale {s:g}" for s, _r in results]
    print()
    print(f"{'seconds':<30}" + "".join(f"{h:>16}" for h in head))
    print(f"{'ledger rows':<30}" + "".join(f"{r['rows']:>16,}" for _s, r in results))
    for phase in phases:
        print(f"{'  ' + phase:<30}" + "".join(f"{r['seconds'].get(phase, 0.0):>16.2f}" for _s, r in results))
    print(f"{'scan total (s)':<30}" + "".join(f"{r['total']:>16.2f}" for _s, r in results))
    print(f"{'loading detectors, once (s)':<30}" + "".join(f"{r['imports']:>16.2f}" for _s, r in results))
    print(f"{'microseconds per row':<30}" + "".join(f"{1e6 * r['total'] / r['rows']:>16.1f}" for _s, r in results))
    print(f"{'hits / flags':<30}" + "".join(f"{str(r['hits']) + ' / ' + str(r['flags']):>16}" for _s, r in results))
    print(f"{'peak memory, whole child (MiB)':<30}" + "".join(f"{r['peak_mib']:>16.0f}" for _s, r in results))
    print(f"{'  of which before the scan':<30}" + "".join(f"{r['peak_before_scan_mib']:>16.0f}" for _s, r in results))
    print()
    print(f"{'measure':<48}{'figure':>12}{'target':>12}")
    for _s, r in results:
        nominal, limit = _target(r["rows"])
        # A data set a little off its nominal size is held to the target scaled to its rows.
        allowed = limit * r["rows"] / nominal
        ok = "ok" if r["total"] <= allowed else "MISSED"
        print(f"{'scan of ' + format(r['rows'], ',') + ' rows (s)':<48}{r['total']:>12.2f}"
              f"{'<= ' + format(allowed, '.1f'):>12}  {ok}")
    if len(results) >= 2:
        (_a, small), (_b, large) = results[0], results[-1]
        ratio = (large["total"] / large["rows"]) / (small["total"] / small["rows"])
        ok = "ok" if ratio <= 1.0 else "MISSED"
        print(f"{'time per row, large / small':<48}{ratio:>12.2f}{'<= 1.00':>12}  {ok}")
        mem = (large["peak_mib"] - large["peak_before_scan_mib"]) / max(
            small["peak_mib"] - small["peak_before_scan_mib"], 1.0)
        print(f"{'scan memory growth, large / small':<48}{mem:>12.2f}"
              f"{'rows x' + format(large['rows'] / small['rows'], '.1f'):>12}")


if __name__ == "__main__":
    main()
