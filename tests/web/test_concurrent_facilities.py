"""Concurrent batches across three facilities against the live app on PostgreSQL: every batch is
answered, none with a server error. Batches name their facilities in every order, so a writer that
locked facilities in batch order would deadlock another (PostgreSQL then fails one of them); the
ledger locks them in one order and a deadlock or serialization failure that still happens is
retried. Bounded: 4 client threads x 40 batches of 3 entries, loopback only."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from sqlalchemy import func, select

from stock.models import LedgerEntry
from tests.threads import run_threads
from tests.web.test_app_api import bearer, issue_token

WORKERS = 4
BATCHES = 40
ORDERS = list(itertools.permutations(["H1", "HC2", "B1"]))


def _batch(worker: int, n: int, rng: random.Random) -> dict:
    lots = {"H1": ("MOR10", "L1", "2028-01-31"), "HC2": ("MOR10", "L2", "2028-01-31"), "B1": ("INSG", "L3", "2027-06-30")}
    out = []
    for k, fac in enumerate(rng.choice(ORDERS)):
        item, lot, expiry = lots[fac]
        out.append({"entry_id": f"load-{worker}-{n}-{k}", "occurred_at": "2026-03-05T10:00:00+02:00",
                    "facility_code": fac, "kind": "receipt", "item_code": item, "lot_number": lot,
                    "quantity": 1, "expiry_date": expiry})
    return {"entries": out}


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_three_facility_batches_from_four_workers_never_answer_a_server_error(live_server):
    token = issue_token(live_server, "admin")
    statuses: Counter = Counter()

    def worker(i: int) -> None:
        rng = random.Random(i)
        c = live_server.client(headers=bearer(token))
        for n in range(BATCHES):
            r = c.post("/api/v1/entries", json=_batch(i, n, rng))
            statuses[r.status_code] += 1

    run_threads(worker, WORKERS, timeout=300)
    assert statuses == Counter({201: WORKERS * BATCHES}), statuses
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)
                        .where(LedgerEntry.entry_id.like("load-%"))) == WORKERS * BATCHES * 3
