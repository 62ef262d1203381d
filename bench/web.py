"""Web benchmarks, run by hand: dispensing through the API under concurrent load, and the
manager's dashboard and the auditor's flag queue at two ledger sizes.

    .venv/bin/python bench/web.py [--rows 1000000] [--small 10000] [--clients 32] [--requests 4000]
                                  [--page-requests 30] [--skip-postgres] [--workdir /tmp/dawa-bench-web]

Everything is served by `dawa serve` started as a subprocess on 127.0.0.1 (one worker unless
--workers) and talked to over loopback only.

(a) Dispensing: --clients concurrent clients each POST /api/v1/entries with one
    dispense per request and a unique entry_id, as pharmacists of the sample's dispensing
    facilities (one personal token each), until --requests are done or --seconds have passed.
    One request in ten re-sends an entry_id the client already sent (it must answer 200, nothing
    created). Reports requests/s and p50/p95/p99 latency, then checks that no entry was lost or
    doubled: ledger rows, their sum and the lots' balance after the run against the dispenses
    the server acknowledged, and a burst re-posting a sample of entry_ids concurrently (every
    answer 200, nothing created). The CPU time the server (all its processes) and the clients
    spent per request is shown too (and on PostgreSQL its backends' for this database): on a
    machine the clients and the database share with the server, their share bounds what the
    server can get. On SQLite, and on PostgreSQL in a scratch database on
    127.0.0.1:5432 (user postgres) dropped afterwards. Target: >= 300 requests/s, p95 < 200 ms.
    The clients are part of the apparatus, so they are kept lean: one HTTP/1.1 keep-alive
    connection each over asyncio streams (uvloop's event loop when installed), the request head
    encoded once per client, and of the answer only the status line, Content-Length (or chunks)
    and the JSON body read. A general client (httpx) spent about 2 ms of CPU per request, CPU
    the server on the same cores could not use.
(b) Pages: the facility manager's stock dashboard (/stock/{facility}) of the busiest facility and
    the auditor's flag queue (/flags), --page-requests each after a warm-up, on a database of
    --small and one of --rows ledger rows (the project's generator cut to size, `dawa import`'s
    bulk path, then a scan for the flags); p50/p95 side by side with their ratio. The databases
    are cached in the work folder, so a second run starts at once. Target: p95 < 300 ms.

The machine's load average is printed with the figures: timings on a busy machine are upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

# This file is named like the project's web package: take its folder off the path, so that
# `import web` finds the package, and reach bench/ledger.py by its path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import httpx  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

import migrations  # noqa: E402
from sample_data import SMALL  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DAWA = Path(sys.executable).with_name("dawa")
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-" + "x" * 12
BENCH_ITEM_LOT = "BENCH-WEB-LOT"
TARGET_RPS, TARGET_P95_API, TARGET_P95_PAGE = 300, 0.200, 0.300


# --- serving ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`dawa serve` in a subprocess on 127.0.0.1, over ``url``, until stopped."""

    def __init__(self, url: str, workdir: Path, workers: int = 1):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DAWA_DATABASE_URL": url, "DAWA_SECRET_KEY": secrets.token_urlsafe(32),
               "DAWA_PATIENT_ID_KEY": secrets.token_urlsafe(32)}
        self.log = (workdir / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen([str(DAWA), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--workers", str(workers)],
                                     cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dawa serve did not start; see {self.log.name}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every process under it (uvicorn's
    workers), from /proc; 0 where /proc is not there."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        cpu[child] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


def database_cpu(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving ``url``'s database (found by the
    database name in their process titles, from /proc); 0 for SQLite, which runs in the server."""
    if not url.startswith("postgresql"):
        return 0.0
    name = url.rsplit("/", 1)[1].split("?")[0]
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes()
            if not title.startswith(b"postgres: ") or f" {name} ".encode() not in title:
                continue
            fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


# --- (a) dispensing through the API ----------------------------------------------------------

@dataclass
class LoadWorld:
    url: str
    tokens: list[tuple[str, str]]  # (facility code, token)
    item: str
    cards: list[str]
    initial: Decimal  # stock of the bench lot at each facility


def prepare_load_db(url: str) -> LoadWorld:
    """The small sample imported, a large lot of one item received at every dispensing facility,
    and a pharmacist with a personal token at each."""
    from stock.importer import import_dataset
    from stock.ledger import NewEntry, post
    from stock.models import Facility, Item, Patient
    from stock.settings import get_settings
    from web import auth
    from web.admin.service import create_user

    engine = make_engine(url)
    migrations.upgrade(engine)
    web = get_settings().web.model_copy(update={"argon2_time_cost": 1, "argon2_memory_kib": 1024,
                                                "argon2_parallelism": 1})
    initial = Decimal(10_000_000)
    with session_factory(engine)() as s:
        import_dataset(s, SMALL)
        facilities = list(s.scalars(select(Facility.code).where(Facility.kind != "warehouse").order_by(Facility.code)))
        item = s.scalar(select(Item.code).where(Item.controlled.is_(False)).order_by(Item.code))
        cards = list(s.scalars(select(Patient.health_card_id).where(Patient.deceased_on.is_(None))
                               .order_by(Patient.id).limit(200)))
        now = datetime.now(timezone.utc)
        post(s, [NewEntry(entry_id=f"bench-receipt-{code}", kind="receipt", facility_code=code, item_code=item,
                          quantity=initial, occurred_at=now - timedelta(days=1), recorded_by="bench",
                          lot_number=BENCH_ITEM_LOT, expiry_date=date.today() + timedelta(days=3 * 365),
                          counterparty_code="BENCH SUPPLIER") for code in facilities])
        tokens = []
        for code in facilities:
            user = create_user(s, f"bench_{code.lower()}", "pharmacist", PASSWORD, facility=code, web=web)
            tokens.append((code, auth.issue_api_token(s, user, "bench")[0]))
        s.commit()
    engine.dispose()
    return LoadWorld(url, tokens, item, cards, initial)


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    created: dict[str, tuple[str, dict]] = field(default_factory=dict)  # entry_id -> (facility, body sent)
    reposts: int = 0
    reposts_ok: int = 0
    errors: list[str] = field(default_factory=list)
    retries: int = 0  # requests sent again after a transport error


RETRIES = 3


def dispense(world: LoadWorld, facility: str, entry_id: str, card: str) -> dict:
    return {"entries": [{"entry_id": entry_id, "kind": "dispense", "facility_code": facility,
                         "item_code": world.item, "lot_number": BENCH_ITEM_LOT, "quantity": 1,
                         "health_card_id": card, "occurred_at": datetime.now(timezone.utc).isoformat()}]}


class HttpError(Exception):
    """The connection failed or the answer could not be read; the request may or may not have
    reached the server."""


class Connection:
    """One HTTP/1.1 keep-alive connection that POSTs JSON: the request head is encoded once, and of
    the answer only the status, the length (Content-Length or chunked) and the body are read. The
    load clients share the machine with the server, so they do as little as a client can."""

    def __init__(self, base_url: str, token: str, path: str = "/api/v1/entries"):
        host_port = base_url.split("://", 1)[1].rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        self.head = (f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: ").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: dict, timeout: float = 60) -> tuple[int, bytes]:
        """(status, body) of POSTing ``body`` as JSON; HttpError when the exchange failed."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        try:
            return await asyncio.wait_for(self._exchange(payload), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ValueError) as exc:
            self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.head + b"%d\r\n\r\n" % len(payload) + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers are expected
                    break
                parts.append(await self.reader.readexactly(size + 2))
            data = b"".join(p[:-2] for p in parts)
        elif length is not None:
            data = await self.reader.readexactly(length)
        else:
            data, close = await self.reader.read(), True
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def created_count(status: int, data: bytes) -> int | None:
    """The ``created`` count of a 2xx answer, or None."""
    if not 200 <= status < 300:
        return None
    try:
        return json.loads(data)["created"]
    except (ValueError, KeyError, TypeError):
        return None


def run_async(coro):
    """Runs ``coro`` on uvloop's event loop when it is installed (it costs the clients less CPU)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def run_load(base_url: str, world: LoadWorld, clients: int, requests: int, seconds: float) -> LoadResult:
    result = LoadResult()
    counter = iter(range(requests))
    deadline = time.monotonic() + seconds
    run_tag = secrets.token_hex(3)

    async def client(n: int) -> None:
        facility, token = world.tokens[n % len(world.tokens)]
        sent: list[dict] = []
        c = Connection(base_url, token)
        try:
            for i in counter:
                if time.monotonic() > deadline:
                    break
                repost = bool(sent) and i % 10 == 9
                body = sent[(i * 7919) % len(sent)] if repost else dispense(
                    world, facility, f"bench-{run_tag}-{n}-{i}", world.cards[i % len(world.cards)])
                t = time.perf_counter()
                answer = None
                # As a pharmacy's client would: a request lost on the way is sent again with the
                # same entry_id, which the API records once whatever reached it before.
                for attempt in range(RETRIES):
                    try:
                        answer = await c.post(body)
                        break
                    except HttpError as exc:
                        result.errors.append(str(exc))
                        result.retries += attempt + 1 < RETRIES
                if answer is None:
                    continue
                status, data = answer
                result.latencies.append(time.perf_counter() - t)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                entry_id = body["entries"][0]["entry_id"]
                if repost:
                    result.reposts += 1
                    result.reposts_ok += status == 200 and created_count(status, data) == 0
                elif status == 201 or (attempt and status == 200):
                    result.created[entry_id] = (facility, body)
                    sent.append(body)
                else:
                    result.errors.append(f"{status}: {data[:200].decode(errors='replace')}")
        finally:
            c.close()

    t = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    result.seconds = time.perf_counter() - t
    return result


async def repost_burst(base_url: str, world: LoadWorld, result: LoadResult, clients: int, n: int) -> tuple[int, int]:
    """Re-post ``n`` acknowledged entries concurrently: (answers 200 with nothing created, total)."""
    token_of = dict(world.tokens)
    sample = sorted(result.created)[:: max(1, len(result.created) // n)][:n]
    sem = asyncio.Semaphore(clients)
    ok = 0

    async def one(entry_id: str) -> None:
        nonlocal ok
        facility = result.created[entry_id][0]
        async with sem:
            c = Connection(base_url, token_of[facility])
            try:
                status, data = await c.post(result.created[entry_id][1])
            except HttpError:
                return
            finally:
                c.close()
            ok += status == 200 and created_count(status, data) == 0

    await asyncio.gather(*(one(e) for e in sample))
    return ok, len(sample)


def ledger_check(url: str, world: LoadWorld, result: LoadResult) -> dict:
    """Rows, their sum and the balances for the bench lot, against what the server acknowledged."""
    from stock.models import Balance, LedgerEntry, Lot

    engine = make_engine(url)
    with session_factory(engine, read_only=True)() as s:
        rows, effect = s.execute(select(func.count(), func.coalesce(func.sum(LedgerEntry.effect), 0))
                                 .join(Lot, Lot.id == LedgerEntry.lot_id)
                                 .where(Lot.lot_number == BENCH_ITEM_LOT, LedgerEntry.kind == "dispense")).one()
        balance = s.scalar(select(func.sum(Balance.on_hand)).join(Lot, Lot.id == Balance.lot_id)
                           .where(Lot.lot_number == BENCH_ITEM_LOT))
        ids = set(s.scalars(select(LedgerEntry.entry_id).join(Lot, Lot.id == LedgerEntry.lot_id)
                            .where(Lot.lot_number == BENCH_ITEM_LOT, LedgerEntry.kind == "dispense")))
    engine.dispose()
    expected = len(result.created)
    return {"rows": rows, "expected": expected, "lost": len(set(result.created) - ids),
            "unexpected": len(ids - set(result.created)), "sum_ok": -Decimal(effect) == expected,
            "balance_ok": Decimal(balance) == world.initial * len(world.tokens) - expected}


def bench_dispensing(label: str, url: str, workdir: Path, args) -> dict:
    print(f"[{label}] preparing the database ...", flush=True)
    world = prepare_load_db(url)
    with Server(url, workdir, args.workers) as server:
        print(f"[{label}] {args.clients} clients posting up to {args.requests} dispenses "
              f"(at most {args.seconds:.0f} s) ...", flush=True)
        server_cpu, client_cpu = process_tree_cpu(server.proc.pid), time.process_time()
        db_cpu = database_cpu(url)
        load = run_async(run_load(server.base_url, world, args.clients, args.requests, args.seconds))
        server_cpu = process_tree_cpu(server.proc.pid) - server_cpu
        db_cpu = database_cpu(url) - db_cpu
        client_cpu = time.process_time() - client_cpu
        burst_ok, burst_n = run_async(repost_burst(server.base_url, world, load, args.clients, 200))
        after = ledger_check(url, world, load)
    ok = [x for s, x in load.statuses.items() if 200 <= s < 300]
    n = len(load.latencies)
    return {
        "label": label, "requests": n, "seconds": load.seconds, "rps": n / load.seconds if load.seconds else 0,
        "p50": percentile(load.latencies, 50), "p95": percentile(load.latencies, 95),
        "p99": percentile(load.latencies, 99), "statuses": load.statuses, "errors": load.errors[:3], "retries": load.retries,
        "non_2xx": n - sum(ok), "created": len(load.created), "reposts": load.reposts,
        "reposts_ok": load.reposts_ok, "burst": (burst_ok, burst_n), "after": after,
        "server_cpu_ms": 1e3 * server_cpu / n if n else 0, "client_cpu_ms": 1e3 * client_cpu / n if n else 0,
        "db_cpu_ms": 1e3 * db_cpu / n if n else 0,
    }


# --- PostgreSQL scratch database -------------------------------------------------------------

class PgScratch:
    """A database of its own on 127.0.0.1:5432, dropped on exit."""

    def __init__(self):
        self.name = f"dawa_bench_web_{os.getpid()}"
        self.admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))
            c.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


# --- (b) pages at two sizes ------------------------------------------------------------------

def prepare_pages_db(workdir: Path, rows: int) -> tuple[Path, str]:
    """A cached SQLite database of ``rows`` ledger rows, scanned, with a manager of the busiest
    facility and a national auditor; (path, busiest facility code)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ledger", _HERE / "ledger.py")
    bench_ledger = importlib.util.module_from_spec(spec)
    sys.modules["bench_ledger"] = bench_ledger  # its dataclasses look their module up
    spec.loader.exec_module(bench_ledger)
    busiest_facility, dataset = bench_ledger.busiest_facility, bench_ledger.dataset

    folder = workdir / f"pages-{rows}"
    db, done = folder / "dawa.sqlite", folder / "ready.json"
    if done.exists():
        engine = make_engine(f"sqlite:///{db}")
        try:
            if migrations.is_current(engine):
                return db, json.loads(done.read_text())["facility"]
        finally:
            engine.dispose()
    from anomaly import scan
    from stock.importer import import_dataset
    from web.admin.service import create_user

    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ds = dataset(workdir / "data", rows)
    facility = busiest_facility(ds)
    for old in folder.glob("dawa.sqlite*"):
        old.unlink()
    engine = make_engine(f"sqlite:///{db}")
    migrations.upgrade(engine)
    with session_factory(engine)() as s:
        report = import_dataset(s, ds)
        s.commit()
        scan.run(s)
        s.commit()
        from stock.settings import get_settings

        web = get_settings().web
        create_user(s, "bench_manager", "facility_manager", PASSWORD, facility=facility, web=web)
        create_user(s, "bench_auditor", "auditor", PASSWORD, web=web)
        s.commit()
    engine.dispose()
    done.write_text(json.dumps({"rows": report.entries_added, "facility": facility}))
    print(f"built {db}: {report.entries_added:,} rows, imported and scanned in {time.perf_counter() - t:.0f} s",
          flush=True)
    return db, facility


def login(c: httpx.Client, username: str) -> None:
    import re

    page = c.get("/login")
    token = re.search(r'name="csrf_token"\s+value="([^"]*)"', page.text).group(1)
    r = c.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303, (r.status_code, r.text[:300])


def time_page(c: httpx.Client, path: str, n: int, warmup: int = 3) -> tuple[float, float, int]:
    for _ in range(warmup):
        c.get(path)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = c.get(path)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, (path, r.status_code)
    return percentile(times, 50), percentile(times, 95), len(r.content)


def bench_pages(workdir: Path, rows: int, n: int) -> dict:
    db, facility = prepare_pages_db(workdir, rows)
    with Server(f"sqlite:///{db}", workdir) as server:
        with httpx.Client(base_url=server.base_url, timeout=60) as manager, \
                httpx.Client(base_url=server.base_url, timeout=60) as auditor:
            login(manager, "bench_manager")
            login(auditor, "bench_auditor")
            dash = time_page(manager, f"/stock/{facility}", n)
            queue = time_page(auditor, "/flags", n)
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        actual = conn.execute(text("SELECT count(*) FROM ledger_entry")).scalar()
        flags = conn.execute(text("SELECT count(*) FROM flag")).scalar()
    engine.dispose()
    return {"rows": actual, "flags": flags, "facility": facility, "dashboard": dash, "queue": queue}


# --- report ----------------------------------------------------------------------------------

def ms(x: float) -> str:
    return f"{x * 1e3:.0f}"


def print_load(results: list[dict]) -> None:
    print()
    print(f"{'dispensing through the API':<44}" + "".join(f"{r['label']:>14}" for r in results) + f"{'target':>12}")
    rows = [
        ("requests (s)", lambda r: f"{r['requests']} ({r['seconds']:.1f})", ""),
        ("requests/s", lambda r: f"{r['rps']:.0f}", f">= {TARGET_RPS}"),
        ("latency p50 / p95 / p99 (ms)", lambda r: f"{ms(r['p50'])}/{ms(r['p95'])}/{ms(r['p99'])}",
         f"p95 < {ms(TARGET_P95_API)}"),
        ("CPU per request: server / clients (ms)", lambda r: f"{r['server_cpu_ms']:.1f} / {r['client_cpu_ms']:.1f}",
         ""),
        ("  PostgreSQL backends (ms)", lambda r: f"{r['db_cpu_ms']:.1f}" if r["db_cpu_ms"] else "-", ""),
        ("answers other than 2xx", lambda r: str(r["non_2xx"]), "0"),
        ("dispenses acknowledged (201)", lambda r: str(r["created"]), ""),
        ("sent again after a transport error", lambda r: str(r["retries"]), ""),
        ("ledger rows for them", lambda r: str(r["after"]["rows"]), "= acked"),
        ("lost / doubled or unacknowledged", lambda r: f"{r['after']['lost']} / {r['after']['unexpected']}", "0 / 0"),
        ("ledger sum and balance agree", lambda r: "yes" if r["after"]["sum_ok"] and r["after"]["balance_ok"]
         else "NO", "yes"),
        ("re-posts in the run: 200, none new", lambda r: f"{r['reposts_ok']}/{r['reposts']}", "all"),
        ("re-post burst after: 200, none new", lambda r: f"{r['burst'][0]}/{r['burst'][1]}", "all"),
    ]
    for name, fmt, target in rows:
        print(f"{name:<44}" + "".join(f"{fmt(r):>14}" for r in results) + f"{target:>12}")
    if len(results) == 2:
        a, b = results
        print(f"{'ratio of requests/s (' + b['label'] + ' / ' + a['label'] + ')':<44}{b['rps'] / a['rps']:>14.2f}")
    for r in results:
        if r["errors"]:
            print(f"  {r['label']} first errors: {r['errors']}")


def print_pages(small: dict, big: dict) -> None:
    print()
    head = [f"{small['rows']:,} rows", f"{big['rows']:,} rows"]
    print(f"{'pages, p50 / p95 (ms)':<44}{head[0]:>16}{head[1]:>16}{'ratio p95':>11}{'target':>12}")
    for key, name in (("dashboard", f"manager's dashboard /stock/{big['facility']}"),
                      ("queue", "auditor's flag queue /flags")):
        s, b = small[key], big[key]
        print(f"{name:<44}{ms(s[0]) + ' / ' + ms(s[1]):>16}{ms(b[0]) + ' / ' + ms(b[1]):>16}"
              f"{b[1] / s[1]:>11.2f}{'p95 < ' + ms(TARGET_P95_PAGE):>12}")
    print(f"{'flags in the database':<44}{small['flags']:>16,}{big['flags']:>16,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="ledger rows of the large pages database")
    ap.add_argument("--small", type=int, default=10_000, help="ledger rows of the small pages database")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=4000, help="dispense requests per database")
    ap.add_argument("--seconds", type=float, default=60, help="stop a load run after this long")
    ap.add_argument("--page-requests", type=int, default=30)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers of dawa serve")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--skip-pages", action="store_true")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench-web"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not DAWA.exists():
        sys.exit(f"{DAWA} not found: install the project (pip install -e .) in this interpreter's venv")

    before = load_average()
    load_results = []
    if not args.skip_load:
        scratch = args.workdir / "load.sqlite"
        for old in args.workdir.glob("load.sqlite*"):
            old.unlink()
        load_results.append(bench_dispensing("SQLite", f"sqlite:///{scratch}", args.workdir, args))
        if not args.skip_postgres:
            pg = PgScratch()
            try:
                load_results.append(bench_dispensing("PostgreSQL", pg.url, args.workdir, args))
            finally:
                pg.drop()
        print(f"\ncores: {os.cpu_count()}; load average (1, 5, 15 min) before: {before}; now: {load_average()}; "
              f"uvicorn workers: {args.workers}; clients: {args.clients}")
        print_load(load_results)
    pages = None
    if not args.skip_pages:
        small = bench_pages(args.workdir, args.small, args.page_requests)
        big = bench_pages(args.workdir, args.rows, args.page_requests)
        pages = (small, big)
    if pages:
        print(f"\ncores: {os.cpu_count()}; load average (1, 5, 15 min) now: {load_average()}")
        print_pages(*pages)


if __name__ == "__main__":
    main()
