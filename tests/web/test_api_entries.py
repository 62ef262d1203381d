"""POST /api/v1/entries against the live app on both databases: batches recorded all or nothing,
idempotent by entry_id, problems named by batch index and field, scope enforced."""

from __future__ import annotations

from sqlalchemy import func, select

from stock.models import LedgerEntry
from tests.web.conftest import page_csrf
from tests.web.test_app_api import bearer, issue_token
from web.models import AuditRecord

AT = "2026-03-05T10:00:00+02:00"


def row(entry_id: str, kind: str = "dispense", quantity=5, facility: str = "H1", **kw) -> dict:
    out = {"entry_id": entry_id, "occurred_at": AT, "facility_code": facility, "kind": kind,
           "item_code": "MOR10", "lot_number": "L1", "quantity": quantity}
    if kind == "dispense":
        out["health_card_id"] = "LY0000000001"
    out.update(kw)
    return out


def count_entries(live_server, prefix: str = "api-") -> int:
    with live_server.Session() as s:
        return s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.entry_id.like(prefix + "%")))


def on_hand_h1(c) -> int:
    rows = c.get("/api/v1/stock/on-hand", params={"facility": "H1", "item": "MOR10"}).json()
    return sum(r["on_hand"] for r in rows)


def test_a_batch_is_recorded_once_and_a_retry_records_nothing(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    batch = {"entries": [row("api-1", quantity=5, prescription_id="RX1"),
                         row("api-2", kind="receipt", quantity=40, lot_number="L9", expiry_date="2028-06-30",
                             counterparty_code="Supplier Ltd"),
                         row("api-3", quantity=70, health_card_id="LY0000000009")]}
    r = c.post("/api/v1/entries", json=batch)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] == 3 and body["already_recorded"] == 0
    assert [(e["index"], e["entry_id"], e["created"]) for e in body["entries"]] == [
        (0, "api-1", True), (1, "api-2", True), (2, "api-3", True)]
    # Policy breaks are recorded and reported, never refused: unregistered patient, over the ceiling.
    codes = {n["code"] for n in body["entries"][2]["notes"]}
    assert "unregistered_patient" in codes and "over_ceiling" in codes
    assert on_hand_h1(c) == 90 - 5 + 40 - 70
    with live_server.Session() as s:
        stored = s.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == "api-1")).one()
        assert stored.recorded_by == "pharm_h1" and stored.prescription_ref == "RX1"
        audits = s.scalars(select(AuditRecord).where(AuditRecord.action == "ledger_post")).all()
        assert sorted(a.object_id for a in audits) == ["api-1", "api-2", "api-3"]
        assert all('"via": "api"' in a.detail for a in audits)

    again = c.post("/api/v1/entries", json=batch)
    assert again.status_code == 200, again.text
    assert again.json()["created"] == 0 and again.json()["already_recorded"] == 3
    assert count_entries(live_server) == 3
    assert on_hand_h1(c) == 90 - 5 + 40 - 70
    # Half old, half new: only the new one is recorded.
    mixed = c.post("/api/v1/entries", json={"entries": [batch["entries"][0], row("api-4", quantity=1)]})
    assert mixed.status_code == 201 and [e["created"] for e in mixed.json()["entries"]] == [False, True]
    assert count_entries(live_server) == 4


def test_a_refusal_while_posting_stores_nothing_of_the_batch(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "manager_h1")))
    batch = {"entries": [row("api-a", quantity=10), row("api-b", kind="loss", quantity=5, reason="damaged"),
                         row("api-c", quantity=500)]}
    r = c.post("/api/v1/entries", json=batch)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["field"] == "entries[2].quantity" and "on hand" in err["message"]
    assert count_entries(live_server) == 0 and on_hand_h1(c) == 90
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(AuditRecord)
                        .where(AuditRecord.action == "ledger_post")) == 0

    # The same entry_id with other content is a conflict naming the entry.
    assert c.post("/api/v1/entries", json={"entries": [row("api-a", quantity=10)]}).status_code == 201
    r = c.post("/api/v1/entries", json={"entries": [row("api-d", quantity=1), row("api-a", quantity=11)]})
    assert r.status_code == 409 and r.json()["error"]["field"] == "entries[1].entry_id"
    assert "different content" in r.json()["error"]["message"]
    assert count_entries(live_server) == 1


def test_every_shape_problem_is_named_by_index_and_field(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "admin")))
    batch = {"entries": [
        row("api-ok", quantity=1),
        row("api-q", quantity=-3),
        row("api-t", occurred_at="2026-03-05T10:00:00"),
        row("api-k", kind="stolen"),
        {k: v for k, v in row("api-h").items() if k != "health_card_id"},
        row("api-x", colour="red"),
        row("api-f", facility="NOPE"),
        row("api-r", kind="loss"),
        row("api-who", recorded_by="someone_else"),
        row("api-d", quantity="1.23456"),
        "not an entry",
    ]}
    r = c.post("/api/v1/entries", json=batch)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    fields = [p["field"] for p in err["problems"]]
    assert fields == ["entries[1].quantity", "entries[2].occurred_at", "entries[3].kind",
                      "entries[4].health_card_id", "entries[5].colour", "entries[6].facility_code",
                      "entries[7].reason", "entries[8].recorded_by", "entries[9].quantity", "entries[10]"]
    assert err["field"] == "entries[1].quantity" and err["message"] == err["problems"][0]["message"]
    assert all(p["message"] for p in err["problems"])
    assert "unknown facility 'NOPE'" in err["problems"][5]["message"]
    assert count_entries(live_server) == 0

    for body, field in (({"entries": []}, "entries"), ({"rows": []}, "entries"), ([1, 2], "entries"),
                        ({"entries": [row("api-1")], "extra": 1}, "extra"),
                        ({"entries": [row(f"api-{i}") for i in range(1001)]}, "entries")):
        r = c.post("/api/v1/entries", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, body if len(str(body)) < 200 else field
    r = c.post("/api/v1/entries", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the body is not JSON"
    assert count_entries(live_server) == 0


def test_scope_and_role_are_enforced_per_entry(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    batch = {"entries": [row("api-1", quantity=1), row("api-2", facility="HC2", lot_number="L2", quantity=1),
                         row("api-3", facility="B1", quantity=-1)]}
    r = c.post("/api/v1/entries", json=batch)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["field"] == "entries[1].facility_code" and "outside your scope" in err["message"]
    assert [p["field"] for p in err["problems"]] == ["entries[1].facility_code", "entries[2].facility_code"]
    assert count_entries(live_server) == 0

    # A regional manager may post for any facility of the region, not beyond it.
    m = live_server.client(headers=bearer(issue_token(live_server, "manager_tripoli")))
    ok = m.post("/api/v1/entries", json={"entries": [row("api-4", quantity=1),
                                                      row("api-5", facility="HC2", lot_number="L2", quantity=1)]})
    assert ok.status_code == 201
    far = m.post("/api/v1/entries", json={"entries": [row("api-6", facility="B1", item_code="INSG",
                                                           lot_number="L3", quantity=1)]})
    assert far.status_code == 403
    # Auditors review; they do not move stock.
    a = live_server.client(headers=bearer(issue_token(live_server, "auditor")))
    r = a.post("/api/v1/entries", json={"entries": [row("api-7", quantity=1)]})
    assert r.status_code == 403 and "role" in r.json()["error"]["message"]
    assert count_entries(live_server) == 2


def test_a_logged_in_browser_session_needs_its_csrf_token(live_server):
    c = live_server.login("pharm_h1")
    body = {"entries": [row("api-1", quantity=1)]}
    r = c.post("/api/v1/entries", json=body)
    assert r.status_code == 403 and r.json()["error"]["field"] == "csrf_token"
    r = c.post("/api/v1/entries", json=body, headers={"X-CSRF-Token": page_csrf(c)})
    assert r.status_code == 201
    assert count_entries(live_server) == 1


def test_the_batch_is_described_in_the_openapi_schema(live_server):
    schema = live_server.client().get("/api/openapi.json").json()
    op = schema["paths"]["/api/v1/entries"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    item = body["properties"]["entries"]["items"]
    assert {"entry_id", "occurred_at", "facility_code", "kind", "item_code", "quantity"} <= set(item["required"])


def test_pack_serial_recorded_and_part_of_the_content(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    r = c.post("/api/v1/entries", json={"entries": [row("api-s1", quantity=1, serial_number="SN-0042")]})
    assert r.status_code == 201, r.text
    with live_server.Session() as s:
        assert s.scalar(select(LedgerEntry.serial_number).where(LedgerEntry.entry_id == "api-s1")) == "SN-0042"
    same = c.post("/api/v1/entries", json={"entries": [row("api-s1", quantity=1, serial_number="SN-0042")]})
    assert same.status_code == 200 and same.json()["already_recorded"] == 1
    other = c.post("/api/v1/entries", json={"entries": [row("api-s1", quantity=1, serial_number="SN-0043")]})
    assert other.status_code == 409, other.text
    assert "serial_number: stored 'SN-0042', now 'SN-0043'" in other.json()["error"]["message"]
    bad = c.post("/api/v1/entries", json={"entries": [row("api-s2", quantity=1),
                                                      row("api-s3", quantity=1, serial_number="SN 42")]})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["field"] == "entries[1].serial_number"
    assert "outside GS1's character set" in bad.json()["error"]["message"]
    assert count_entries(live_server, "api-s") == 1


def test_an_expired_lot_is_received_only_for_destruction(live_server):
    """The rule book's lot rule through the API: a receipt of a lot expired before the day it
    happens is refused, naming the field, unless its reason says it comes for destruction."""
    c = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    expired = row("api-x1", kind="receipt", quantity=12, lot_number="OLD-7", expiry_date="2025-12-31")
    r = c.post("/api/v1/entries", json={"entries": [expired]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "entries[0].expiry_date"
    assert "expired on 2025-12-31: an expired lot is received only for destruction" in err["message"]
    assert count_entries(live_server, "api-x") == 0
    r = c.post("/api/v1/entries", json={"entries": [{**expired, "reason": "destruction"}]})
    assert r.status_code == 201, r.text
    with live_server.Session() as s:
        stored = s.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == "api-x1")).one()
        assert (stored.kind, stored.reason) == ("receipt", "destruction")
