"""POST /api/v1/entries holds entries to the rule book's time rule: a dispense dated in the future
is refused, one older than the catch-up window (DAWA_LEDGER_CATCH_UP_DAYS, 365 by default) needs a
reason. Both databases."""

from __future__ import annotations

from tests.web.test_api_entries import row
from tests.web.test_app_api import bearer, issue_token
from tests.web.test_pharmacy import stored


def test_future_and_back_dated_dispenses(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    r = c.post("/api/v1/entries", json={"entries": [row("t-2027", occurred_at="2027-06-01T10:00:00+02:00")]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "entries[0].occurred_at"
    assert "is after the entry was recorded" in r.json()["error"]["message"]
    r = c.post("/api/v1/entries", json={"entries": [row("t-2019", occurred_at="2019-06-01T10:00:00+02:00")]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "entries[0].reason"
    assert "more than 365 days before the entry was recorded" in r.json()["error"]["message"]
    assert stored(live_server, "t-2027") is None and stored(live_server, "t-2019") is None
    r = c.post("/api/v1/entries", json={"entries": [row("t-2019", occurred_at="2019-06-01T10:00:00+02:00",
                                                        reason="paper register of 2019 entered now")]})
    assert r.status_code == 201, r.text
