"""Concurrent POST /api/v1/entries batches are posted in groups, one transaction and one commit per
group (web.api.writers): each batch still answers as it would alone, a refused batch stores
nothing and never takes the others of its group down, and the audit trail has a record per entry."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from starlette.requests import Request

from stock.models import LedgerEntry
from tests.threads import run_threads
from tests.web.test_api_entries import count_entries, on_hand_h1, row
from tests.web.test_app_api import bearer, issue_token
from web import auth
from web.api.entries import parse_batch
from web.api.entry_batches import Batch, record_group
from web.models import AuditRecord


def batch_of(live_server, username: str, rows: list[dict]) -> Batch:
    with live_server.Session() as s:
        user = auth.user_by_username(s, username)
        s.expunge(user)
    request = Request({"type": "http", "method": "POST", "path": "/api/v1/entries", "headers": [],
                       "client": ("127.0.0.1", 50000), "state": {"user": user}, "app": live_server.app})
    entries, problems = parse_batch({"entries": rows}, user)
    return Batch(request, user, rows, entries, problems)


def test_a_group_answers_each_batch_as_alone_and_a_refused_one_takes_none_down(live_server):
    sessions = live_server.app.state.sessions
    batches = [batch_of(live_server, "pharm_h1", [row("api-g1", quantity=5)]),
               batch_of(live_server, "pharm_h1", [row("api-g2", quantity=3), row("api-g3", quantity=500)]),
               batch_of(live_server, "manager_h1", [row("api-g4", quantity=2)]),
               batch_of(live_server, "pharm_h1", [row("api-g5", quantity=1, facility="HC2")]),
               batch_of(live_server, "pharm_h1", [row("api-g1", quantity=5)])]  # a retry within the group
    answers = record_group(sessions, batches)
    assert [a.status_code for a in answers] == [201, 409, 201, 403, 200]
    assert b'"entries[1].quantity"' in answers[1].body and b"on hand" in answers[1].body
    assert b"outside your scope" in answers[3].body
    with live_server.Session() as s:
        ids = set(s.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.entry_id.like("api-%"))))
        audited = sorted(s.scalars(select(AuditRecord.object_id).where(AuditRecord.action == "ledger_post")))
    assert ids == {"api-g1", "api-g4"}
    assert audited == ["api-g1", "api-g4"]
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    assert on_hand_h1(c) == 90 - 5 - 2


def test_a_group_without_refusals_commits_every_batch(live_server):
    sessions = live_server.app.state.sessions
    answers = record_group(sessions, [batch_of(live_server, "pharm_h1", [row(f"api-ok{i}", quantity=1)])
                                      for i in range(6)])
    assert [a.status_code for a in answers] == [201] * 6
    assert count_entries(live_server) == 6


def test_concurrent_clients_lose_and_double_nothing(live_server):
    token = issue_token(live_server, "pharm_h1")
    start = threading.Barrier(12)
    answers: dict[str, int] = {}
    wrong: list[str] = []

    def client(n: int) -> None:
        c = live_server.client(headers=bearer(token))
        start.wait()
        for i in range(4):
            # Client 0 asks for more than there is: refused, each time, alone.
            quantity = 500 if n == 0 else 1
            entry_id = f"api-c{n}-{i}"
            r = c.post("/api/v1/entries", json={"entries": [row(entry_id, quantity=quantity)]})
            answers[entry_id] = r.status_code
            again = c.post("/api/v1/entries", json={"entries": [row(entry_id, quantity=quantity)]})
            if again.status_code != (409 if n == 0 else 200):
                wrong.append(f"{entry_id} again: {again.status_code} {again.text}")

    run_threads(client, 12)
    assert not wrong
    assert sorted(set(answers.values())) == [201, 409]
    assert sum(1 for s in answers.values() if s == 409) == 4
    assert count_entries(live_server) == 11 * 4
    c = live_server.client(headers=bearer(token))
    assert on_hand_h1(c) == 90 - 44
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(AuditRecord)
                        .where(AuditRecord.action == "ledger_post")) == 44


def test_a_large_batch_in_a_group_is_posted_on_its_own(live_server):
    sessions = live_server.app.state.sessions
    large = [row(f"api-big{i}", quantity=1) for i in range(21)]
    answers = record_group(sessions, [batch_of(live_server, "pharm_h1", [row("api-s1", quantity=1)]),
                                      batch_of(live_server, "pharm_h1", large),
                                      batch_of(live_server, "pharm_h1", [row("api-s2", quantity=1)])])
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert count_entries(live_server) == 23
