"""Errors never reveal what the caller may not see, on both databases: an entry_id taken at a
facility outside the caller's scope answers a plain conflict, and a FHIR import naming such a
facility is refused before any of its stock is read."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from stock.models import LedgerEntry
from tests.web.interop_helpers import allow_health_cards
from tests.web.test_app_api import bearer, issue_token

AT = "2026-03-05T10:00:00+02:00"
SECRET_CARD = "LY0000077777"


def _client(live_server, username):
    return live_server.client(headers=bearer(issue_token(live_server, username)))


def _dispense(entry_id: str, facility: str, item: str, lot: str, quantity: int, card: str, rx: str) -> dict:
    return {"entry_id": entry_id, "occurred_at": AT, "facility_code": facility, "kind": "dispense",
            "item_code": item, "lot_number": lot, "quantity": quantity, "health_card_id": card,
            "prescription_id": rx}


def test_entry_id_taken_at_another_facility_is_a_plain_conflict(live_server):
    admin = _client(live_server, "admin")
    r = admin.post("/api/v1/entries", json={"entries": [_dispense("dup-1", "B1", "INSG", "L3", 3, SECRET_CARD,
                                                                  "RX-BENGHAZI")]})
    assert r.status_code == 201, r.text
    pharm = _client(live_server, "pharm_h1")
    r = pharm.post("/api/v1/entries", json={"entries": [_dispense("dup-1", "H1", "MOR10", "L1", 1, "LY0000000001",
                                                                  "RX1")]})
    assert r.status_code == 409
    body = r.text
    for secret in (SECRET_CARD, "RX-BENGHAZI", "INSG", "L3", "B1", "admin", "'3'", "Decimal"):
        assert secret not in body, (secret, body)
    assert r.json()["error"]["field"] == "entries[0].entry_id"
    assert "another facility" in r.json()["error"]["message"]
    # Within the facility the caller works at, the differences are still named (they are theirs).
    r = pharm.post("/api/v1/entries", json={"entries": [_dispense("mine-1", "H1", "MOR10", "L1", 1, "LY0000000001",
                                                                  "RX1")]})
    assert r.status_code == 201
    r = pharm.post("/api/v1/entries", json={"entries": [_dispense("mine-1", "H1", "MOR10", "L1", 2, "LY0000000001",
                                                                  "RX1")]})
    assert r.status_code == 409 and "quantity" in r.json()["error"]["message"]


def test_fhir_import_at_another_facility_is_refused_before_any_read(live_server):
    allow_health_cards(live_server)
    pharm = _client(live_server, "pharm_h1")
    bundle = pharm.get("/api/v1/fhir/bundle", params={"patient_ids": "card"}).json()
    dispenses = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationDispense"]
    assert dispenses
    for i, res in enumerate(dispenses):
        res["id"] = f"fhir-leak-{i}"
        res["location"]["identifier"]["value"] = "B1"
        res["quantity"]["value"] = 100000  # far beyond B1's stock: a post would name its on-hand and lots
    with live_server.Session() as s:
        before = s.scalar(select(func.count()).select_from(LedgerEntry))
    r = pharm.post("/api/v1/fhir/bundle", content=json.dumps(bundle))
    assert r.status_code == 403, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("outside your scope" in i["diagnostics"] for i in outcome["issue"])
    for secret in ("on hand", "L3", "INSG", "20"):
        assert secret not in r.text, (secret, r.text)
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == before
