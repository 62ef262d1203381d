"""Reversals through the paths an attacker would use, the JSON API and the pharmacy form: the rule
book refuses what is no exact inverse, and web.access decides who reverses what (a pharmacist
their own entries of the last 24 hours, a facility manager the facility's entries of the last 30
days). "Today's entries" shows a pharmacist their own entries only, paged. Both databases."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from stock.ledger import post
from tests.stock.builders import entry
from tests.web.conftest import csrf_of
from tests.web.test_app_api import bearer, issue_token
from tests.web.test_pharmacy import on_hand, stored

NOW = datetime.now(timezone.utc)


def seed(live_server, *entries, ago: timedelta = timedelta(0)) -> None:
    """Record ``entries`` as if written ``ago``."""
    with live_server.Session() as s:
        post(s, list(entries), now=NOW - ago)
        s.commit()


def api(live_server, username: str):
    return live_server.client(headers=bearer(issue_token(live_server, username)))


def reversal(entry_id: str, target: str, quantity, facility: str = "H1", reason: str | None = "wrong patient") -> dict:
    out = {"entry_id": entry_id, "occurred_at": NOW.isoformat(), "facility_code": facility, "kind": "adjustment",
           "item_code": "MOR10", "lot_number": "L1" if facility == "H1" else "L2", "quantity": quantity,
           "reverses": target}
    if reason is not None:
        out["reason"] = reason
    return out


def error_of(r) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["field"], body["message"]


def test_api_refuses_a_fake_reversal_and_takes_the_real_one(live_server):
    seed(live_server, entry("dispense", 9, entry_id="D-9", recorded_by="pharm_h1", prescription_id="RX1"))
    c = api(live_server, "pharm_h1")
    status, field, message = error_of(c.post("/api/v1/entries", json={"entries": [reversal("FAKE", "D-9", 1)]}))
    assert (status, field) == (422, "entries[0].quantity")
    assert "changes stock by 1; reversing D-9 takes 9" in message
    assert stored(live_server, "FAKE") is None
    r = c.post("/api/v1/entries", json={"entries": [reversal("REAL", "D-9", 9)]})
    assert r.status_code == 201, r.text
    assert stored(live_server, "REAL").effect == 9


def test_api_looks_at_the_targets_facility(live_server):
    """A reversal posted at the caller's facility naming another facility's entry: refused by scope
    for a pharmacist of H1, and by the rule book for a manager whose scope holds both."""
    seed(live_server, entry("dispense", 5, facility="HC2", lot="L2", entry_id="D-HC2", recorded_by="pharm_hc2"))
    status, field, _ = error_of(api(live_server, "pharm_h1").post(
        "/api/v1/entries", json={"entries": [reversal("X-1", "D-HC2", 5)]}))
    assert (status, field) == (403, "entries[0].reverses")
    status, field, message = error_of(api(live_server, "manager_tripoli").post(
        "/api/v1/entries", json={"entries": [reversal("X-2", "D-HC2", 5)]}))
    assert (status, field) == (422, "entries[0].reverses") and "of another facility than D-HC2" in message
    assert stored(live_server, "X-1") is None and stored(live_server, "X-2") is None


@pytest.mark.parametrize("username,author,ago,allowed", [
    ("pharm_h1", "pharm_h1", timedelta(hours=2), True),
    ("pharm_h1", "someone", timedelta(hours=2), False),          # not their own
    ("pharm_h1", "pharm_h1", timedelta(hours=25), False),        # outside the pharmacist's 24 hours
    ("manager_h1", "someone", timedelta(days=29), True),
    ("manager_h1", "someone", timedelta(days=31), False),        # outside the manager's 30 days
    ("admin", "admin", timedelta(hours=1), False),                # not a role that reverses
], ids=["own-recent", "others", "own-old", "manager-29d", "manager-31d", "admin"])
def test_api_follows_the_reversal_access_rule(live_server, username, author, ago, allowed):
    seed(live_server, entry("dispense", 3, entry_id="D-3", recorded_by=author, prescription_id="RX1"), ago=ago)
    r = api(live_server, username).post("/api/v1/entries", json={"entries": [reversal("V-3", "D-3", 3)]})
    if allowed:
        assert r.status_code == 201, r.text
    else:
        assert error_of(r)[:2] == (403, "entries[0].reverses")
        assert stored(live_server, "V-3") is None


def test_api_reversal_needs_a_reason(live_server):
    seed(live_server, entry("dispense", 3, entry_id="D-3", recorded_by="pharm_h1", prescription_id="RX1"))
    r = api(live_server, "pharm_h1").post("/api/v1/entries", json={"entries": [
        {**reversal("V-3", "D-3", 3, reason=None), "kind": "receipt", "expiry_date": "2028-01-31"}]})
    assert error_of(r) == (422, "entries[0].reason", "A reversal needs a reason.")


def reverse_form(client, facility: str, target: str, reason: str = "mistake"):
    token = csrf_of(client.get("/", follow_redirects=True).text)
    return client.post(f"/pharmacy/{facility}/reverse",
                       data={"csrf_token": token, "entry_id": target, "new_id": f"rev-{target}", "reason": reason})


def test_form_follows_the_reversal_access_rule(live_server):
    seed(live_server, entry("dispense", 4, entry_id="D-other", recorded_by="pharm_other", prescription_id="RX1"))
    seed(live_server, entry("dispense", 2, entry_id="D-old", recorded_by="pharm_h1", prescription_id="RX1"),
         ago=timedelta(days=3))
    pharm = live_server.login("pharm_h1")
    r = reverse_form(pharm, "H1", "D-other")
    assert r.status_code == 403 and "you may reverse only your own entries" in r.text
    r = reverse_form(pharm, "H1", "D-old")
    assert r.status_code == 403 and "more than 24 hours ago: ask a facility manager" in r.text
    assert stored(live_server, "rev-D-other") is None and stored(live_server, "rev-D-old") is None
    manager = live_server.login("manager_h1")
    assert reverse_form(manager, "H1", "D-old").status_code == 303
    assert stored(live_server, "rev-D-old").reverses == "D-old"
    assert on_hand(live_server, "H1", "L1") == 100 - 10 - 4


def test_form_refusals_are_translated(live_server):
    seed(live_server, entry("dispense", 4, entry_id="D-other", recorded_by="pharm_other", prescription_id="RX1"))
    pharm = live_server.login("pharm_h1")
    token = csrf_of(pharm.get("/", follow_redirects=True).text)
    assert pharm.post("/language", data={"csrf_token": token, "lang": "fr"}).status_code in (200, 303)
    r = reverse_form(pharm, "H1", "D-other")
    assert r.status_code == 403 and "you may reverse only your own entries" not in r.text
    assert "D-other" in r.text


def test_todays_entries_are_the_users_own_and_paged(live_server):
    seed(live_server, *[entry("dispense", 1, entry_id=f"mine-{i:02d}", recorded_by="pharm_h1",
                              prescription_id="RX1") for i in range(53)])
    seed(live_server, entry("dispense", 1, entry_id="theirs", recorded_by="pharm_other", prescription_id="RX1"))
    pharm = live_server.login("pharm_h1")
    first = pharm.get("/pharmacy/H1/today").text
    rows = re.findall(r'data-entry="([^"]+)"', first)
    assert len(rows) == 50 and "theirs" not in rows and all(r.startswith("mine-") for r in rows)
    assert first.count('name="new_id"') == 50  # their own, recent: each can be reversed
    assert 'href="/pharmacy/H1/today?page=2"' in first
    second = re.findall(r'data-entry="([^"]+)"', pharm.get("/pharmacy/H1/today?page=2").text)
    assert len(second) == 3 and not set(second) & set(rows)
    manager = live_server.login("manager_h1")
    assert "theirs" in re.findall(r'data-entry="([^"]+)"', manager.get("/pharmacy/H1/today").text)
