"""Benchmark, run by hand: the counter's visit through the form on a large ledger.

    .venv/bin/python bench/visit.py [--rows 1000000] [--visits 120] [--workdir /tmp/dawa-bench-web]
                                    [--skip-pages] [--page-requests 30]

The database is bench/web.py's pages database of --rows ledger rows (the project's generator cut
to size, imported by the bulk path, then scanned; cached in the work folder and shared with
bench/web.py), copied to a scratch file so the cache stays as built. Into the copy go four items,
each in many small lots (LOT_SIZE units, expiring a day apart), a registered patient and a
pharmacist of the busiest facility. `dawa serve` (bench/web.py's Server) then serves the copy on
127.0.0.1, and one client logged in through the login form submits --visits visits (after a
warm-up of WARMUP) as a browser without scripts does: the form drawn (GET), then one POST of four
lines of QUANTITY units each, which the server splits first expiry first across two or three lots
(each visit's split is checked against what the ledger recorded afterwards). Reported: p50 / p95 /
max of the POST (answered 303) and of the form's GET, and the ledger rows recorded against the
rows expected. Target: p95 < 300 ms for the POST.

Unless --skip-pages, bench/web.py's page benchmark runs too on the same cached database (the
manager's dashboard and the auditor's flag queue, p95 < 300 ms each).

The machine's load average is printed with the figures: timings on a busy machine are upper bounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
os.environ["PYTHONPATH"] = os.pathsep.join([str(_HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from stock.db import make_engine, session_factory  # noqa: E402


def _bench_web():
    """bench/web.py, loaded by its path (its name is the web package's)."""
    spec = importlib.util.spec_from_file_location("bench_web", _HERE / "web.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_web"] = module
    spec.loader.exec_module(module)
    return module


bw = _bench_web()

ITEMS = ("BVISIT1", "BVISIT2", "BVISIT3", "BVISIT4")
LOT_SIZE, QUANTITY = Decimal(7), Decimal(10)
"""Every line asks QUANTITY of an item held in lots of LOT_SIZE: each takes from two or three lots."""
WARMUP = 5
CARD = "LYBENCHVISIT01"
TARGET_P95 = 0.300


def prepare_visit_db(workdir: Path, rows: int, visits: int) -> tuple[Path, str, int]:
    """A scratch copy of the cached pages database with the visit's items, lots, patient and
    pharmacist added; (path, facility code, ledger rows before the visits)."""
    from stock.ledger import NewEntry, post
    from stock.masterdata import add_item, add_patient
    from stock.models import LedgerEntry
    from stock.settings import get_settings
    from web.cli_web import create_user

    cached, facility = bw.prepare_pages_db(workdir, rows)
    scratch = workdir / "visit.sqlite"
    for old in workdir.glob("visit.sqlite*"):
        old.unlink()
    shutil.copyfile(cached, scratch)
    engine = make_engine(f"sqlite:///{scratch}")
    lots_each = int((visits + WARMUP) * QUANTITY / LOT_SIZE) + 2
    now = datetime.now(timezone.utc)
    with session_factory(engine)() as s:
        for code in ITEMS:
            add_item(s, code, f"Bench visit item {code}", "tablet")
        add_patient(s, CARD, 1980, "F", facility)
        create_user(s, "bench_pharmacist", "pharmacist", bw.PASSWORD, facility=facility, web=get_settings().web)
        s.commit()
        post(s, [NewEntry(entry_id=f"bench-visit-rc-{code}-{k}", kind="receipt", facility_code=facility, item_code=code,
                          quantity=LOT_SIZE, occurred_at=now - timedelta(hours=1), recorded_by="bench",
                          lot_number=f"BV-{code}-{k:04d}", expiry_date=date.today() + timedelta(days=60 + k))
                 for code in ITEMS for k in range(lots_each)])
        s.commit()
        before = s.scalar(select(func.count()).select_from(LedgerEntry))
    engine.dispose()
    return scratch, facility, before


def run_visits(base_url: str, facility: str, visits: int) -> dict:
    posts, forms, statuses = [], [], []
    with httpx.Client(base_url=base_url, timeout=60) as c:
        bw.login(c, "bench_pharmacist")
        for n in range(WARMUP + visits):
            t = time.perf_counter()
            page = c.get(f"/pharmacy/{facility}/visit")
            took_form = time.perf_counter() - t
            token = re.search(r'name="csrf_token"\s+value="([^"]*)"', page.text).group(1)
            visit_id = re.search(r'name="visit_id" value="([^"]+)"', page.text).group(1)
            data = {"csrf_token": token, "visit_id": visit_id, "health_card_id": CARD, "action": "post"}
            for i, code in enumerate(ITEMS, start=1):
                data[f"l{i}_item"], data[f"l{i}_quantity"] = code, str(QUANTITY)
            t = time.perf_counter()
            r = c.post(f"/pharmacy/{facility}/visit", data=data)
            took = time.perf_counter() - t
            if r.status_code != 303:
                raise SystemExit(f"visit {n}: answered {r.status_code}: {r.text[:800]}")
            if n >= WARMUP:
                posts.append(took)
                forms.append(took_form)
            statuses.append(r.status_code)
    return {"posts": posts, "forms": forms, "visits": len(statuses)}


def check_ledger(scratch: Path, before: int, visits: int) -> dict:
    """Rows recorded by the visits and how many lots each line took from."""
    from stock.models import LedgerEntry

    engine = make_engine(f"sqlite:///{scratch}")
    with session_factory(engine)() as s:
        after = s.scalar(select(func.count()).select_from(LedgerEntry))
        ids = list(s.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.kind == "dispense",
                                                                 LedgerEntry.recorded_by == "bench_pharmacist")))
        total = s.scalar(select(func.sum(LedgerEntry.quantity)).where(LedgerEntry.recorded_by == "bench_pharmacist"))
    engine.dispose()
    lines: dict[str, int] = {}
    for eid in ids:
        visit, line, _k = eid.rsplit("-", 2)
        lines[f"{visit}-{line}"] = lines.get(f"{visit}-{line}", 0) + 1
    return {"rows": after - before, "lines": len(lines), "min_lots": min(lines.values()),
            "max_lots": max(lines.values()), "quantity_ok": total == visits * len(ITEMS) * QUANTITY}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="ledger rows of the database")
    ap.add_argument("--visits", type=int, default=120, help="visits timed (after a warm-up)")
    ap.add_argument("--page-requests", type=int, default=30)
    ap.add_argument("--small", type=int, default=10_000, help="ledger rows of bench/web.py's small pages database")
    ap.add_argument("--skip-pages", action="store_true")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench-web"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    before_load = bw.load_average()
    scratch, facility, before = prepare_visit_db(args.workdir, args.rows, args.visits)
    print(f"visit database: {before:,} ledger rows, facility {facility}; load average before: {before_load}",
          flush=True)
    with bw.Server(f"sqlite:///{scratch}", args.workdir) as server:
        got = run_visits(server.base_url, facility, args.visits)
    check = check_ledger(scratch, before, got["visits"])
    p = bw.percentile
    print(f"\ncores: {os.cpu_count()}; load average (1, 5, 15 min) now: {bw.load_average()}")
    print(f"{'four-line visit, one POST (ms)':<44}{'p50':>8}{'p95':>8}{'max':>8}{'target':>14}")
    print(f"{'  POST /pharmacy/F/visit (303)':<44}{bw.ms(p(got['posts'], 50)):>8}{bw.ms(p(got['posts'], 95)):>8}"
          f"{bw.ms(max(got['posts'])):>8}{'p95 < ' + bw.ms(TARGET_P95):>14}")
    print(f"{'  GET the form':<44}{bw.ms(p(got['forms'], 50)):>8}{bw.ms(p(got['forms'], 95)):>8}"
          f"{bw.ms(max(got['forms'])):>8}")
    print(f"visits timed: {len(got['posts'])} (+{WARMUP} warm-up); ledger rows recorded: {check['rows']} "
          f"for {check['lines']} lines, {check['min_lots']}-{check['max_lots']} lots a line; "
          f"quantities add up: {'yes' if check['quantity_ok'] else 'NO'}")
    if not args.skip_pages:
        small = bw.bench_pages(args.workdir, args.small, args.page_requests)
        big = bw.bench_pages(args.workdir, args.rows, args.page_requests)
        print(f"\ncores: {os.cpu_count()}; load average (1, 5, 15 min) now: {bw.load_average()}")
        bw.print_pages(small, big)


if __name__ == "__main__":
    main()
