"""Replenishment through the real app on SQLite and PostgreSQL: the API's full cycle with its
scope and error rules, and the pages (prepare, change with a reason, approve, ship, receive,
reconcile, stock levels)."""

from __future__ import annotations

import csv
import html
import io
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from stock.ledger import post
from tests.stock.builders import entry
from tests.web.conftest import csrf_of, page_csrf


def stock_the_store(live_server) -> None:
    with live_server.Session() as s:
        post(s, [entry("receipt", 30, facility="WH-C", lot="LA", expiry_date=date(2027, 6, 30)),
                 entry("receipt", 30, facility="WH-C", lot="LB", expiry_date=date(2027, 1, 31))])
        s.commit()


def api(live_server, username):
    c = live_server.login(username)
    c.headers["X-CSRF-Token"] = page_csrf(c)
    return c


def drafted(live_server, quantity: int, reason: str):
    """The store stocked, and H1's March requisition prepared with MOR10 changed to ``quantity``:
    (the H1 pharmacist's client, the region manager's client, the requisition's number)."""
    stock_the_store(live_server)
    pharm, region = api(live_server, "pharm_h1"), api(live_server, "manager_tripoli")
    number = pharm.post("/api/v1/requisitions", json={"facility_code": "H1", "period": "2026-03"}).json()["number"]
    r = pharm.post(f"/api/v1/requisitions/{number}/lines",
                   json={"lines": [{"item_code": "MOR10", "quantity": quantity, "reason": reason}]})
    assert r.status_code == 200, r.text
    return pharm, region, number


def test_api_full_cycle(live_server):
    stock_the_store(live_server)
    pharm, manager_h1, region = (api(live_server, u) for u in ("pharm_h1", "manager_h1", "manager_tripoli"))
    r = pharm.post("/api/v1/requisitions", json={"facility_code": "H1", "period": "2026-03"})
    assert r.status_code == 201, r.text
    req = r.json()
    number = req["number"]
    line = next(ln for ln in req["lines"] if ln["item_code"] == "MOR10")
    assert (line["received"], line["dispensed"], line["closing"], line["amc"], line["suggested"]) == (100, 10, 90, 10, 0)
    assert pharm.post("/api/v1/requisitions", json={"facility_code": "H1", "period": "2026-03"}).status_code == 409
    assert pharm.post("/api/v1/requisitions", json={"facility_code": "HC2", "period": "2026-03"}).status_code == 403
    bad = pharm.post(f"/api/v1/requisitions/{number}/lines", json={"lines": [{"item_code": "MOR10", "quantity": 50}]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "reason"
    r = pharm.post(f"/api/v1/requisitions/{number}/lines",
                   json={"lines": [{"item_code": "MOR10", "quantity": 50, "reason": "new ward opens"}]})
    assert r.status_code == 200 and r.json()["lines"][0]["requested"] == 50
    assert region.post(f"/api/v1/requisitions/{number}/approve", json={}).status_code == 409  # still a draft
    assert pharm.post(f"/api/v1/requisitions/{number}/submit").status_code == 200
    assert pharm.post(f"/api/v1/requisitions/{number}/submit").status_code == 409
    # No one approves their own facility's request; a pharmacist approves nothing.
    assert manager_h1.post(f"/api/v1/requisitions/{number}/approve", json={}).status_code == 403
    assert pharm.post(f"/api/v1/requisitions/{number}/approve", json={}).status_code == 403
    assert api(live_server, "pharm_hc2").get(f"/api/v1/requisitions/{number}").status_code == 404
    r = region.post(f"/api/v1/requisitions/{number}/approve",
                    json={"lines": [{"item_code": "MOR10", "quantity": 40, "reason": "store stock is low"}]})
    assert r.status_code == 200 and r.json()["lines"][0]["approved"] == 40
    assert pharm.post(f"/api/v1/requisitions/{number}/fulfil").status_code == 403  # the store ships, not H1
    r = region.post(f"/api/v1/requisitions/{number}/fulfil")
    shipped = r.json()
    assert shipped["status"] == "shipped" and shipped["waybill"] == "WB-H1-2026-03"
    assert [(s["lot_number"], s["quantity"]) for s in shipped["shipments"]] == [("LB", 30), ("LA", 10)]
    lb = shipped["shipments"][0]["shipment_id"]
    too_many = pharm.post(f"/api/v1/requisitions/{number}/receive", json={"lines": [{"shipment_id": lb, "received": 31}]})
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "received"
    r = pharm.post(f"/api/v1/requisitions/{number}/receive",
                   json={"lines": [{"shipment_id": lb, "received": 28, "damaged": 2, "note": "wet carton"}]})
    assert r.status_code == 200 and r.json()["status"] == "received"
    assert [e["action"] for e in r.json()["timeline"]] == ["prepared", "changed", "submitted", "approved", "shipped",
                                                          "received"]
    recon = pharm.get("/api/v1/requisitions/reconciliation", params={"facility": "H1", "period": "2026-03"}).json()
    mor = next(x for x in recon if x["item_code"] == "MOR10")
    assert (mor["requested"], mor["approved"], mor["shipped"], mor["received"], mor["damaged"],
            mor["shipped_not_received"]) == (50, 40, 40, 38, 2, 2)
    on_hand = pharm.get("/api/v1/stock/on-hand", params={"facility": "H1"}).json()
    assert sum(x["on_hand"] for x in on_hand if x["item"] == "MOR10") == 90 + 38 - 2


def test_pages_cycle_with_reject_and_reasons(live_server):
    stock_the_store(live_server)
    pharm = live_server.login("pharm_h1")
    page = pharm.get("/requisitions/new/H1")
    assert page.status_code == 200
    r = pharm.post("/requisitions/new/H1", data={"period": "2026-03", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/requisitions/REQ-H1-2026-03"
    again = pharm.post("/requisitions/new/H1", data={"period": "2026-03", "csrf_token": csrf_of(page.text)})
    assert again.status_code == 409 and "already has a requisition" in again.text
    page = pharm.get("/requisitions/REQ-H1-2026-03")
    token = csrf_of(page.text)
    assert 'id="submit"' in page.text and 'id="approve"' not in page.text
    r = pharm.post("/requisitions/REQ-H1-2026-03/change", data={"csrf_token": token, "qty_MOR10": "25"})
    assert r.status_code == 422 and "needs a reason" in r.text and 'value="25"' in r.text
    r = pharm.post("/requisitions/REQ-H1-2026-03/change",
                   data={"csrf_token": token, "qty_MOR10": "25", "reason_MOR10": "campaign"})
    assert r.status_code == 303
    assert pharm.post("/requisitions/REQ-H1-2026-03/submit", data={"csrf_token": token}).status_code == 303
    region = live_server.login("manager_tripoli")
    page = region.get("/requisitions/REQ-H1-2026-03")
    assert 'id="approve"' in page.text and 'id="reject"' in page.text
    token = csrf_of(page.text)
    r = region.post("/requisitions/REQ-H1-2026-03/reject", data={"csrf_token": token, "reason": ""})
    assert r.status_code == 422
    r = region.post("/requisitions/REQ-H1-2026-03/reject", data={"csrf_token": token, "reason": "ordered twice"})
    assert r.status_code == 303
    page = pharm.get("/requisitions/REQ-H1-2026-03")
    assert 'data-action="rejected"' in page.text and "ordered twice" in page.text
    listing = region.get("/requisitions")
    assert 'data-number="REQ-H1-2026-03" data-status="rejected"' in listing.text
    assert pharm.get("/requisitions/REQ-H1-2026-03/nonsense").status_code == 405
    page = pharm.get("/requisitions/new/H1")
    r = pharm.post("/requisitions/new/H1", data={"period": "", "emergency": "1", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"].endswith("-E1")  # an emergency needs no period
    assert pharm.post("/requisitions/new/H1", data={"period": "2026-13", "csrf_token": csrf_of(page.text)}
                      ).status_code == 422


def test_reconciliation_page_export_and_levels(live_server):
    pharm, region, number = drafted(live_server, 80, "stock up")
    pharm.post(f"/api/v1/requisitions/{number}/submit")
    region.post(f"/api/v1/requisitions/{number}/approve", json={})
    region.post(f"/api/v1/requisitions/{number}/fulfil")  # the store holds 60 of the 80 approved
    page = region.get("/reconciliation", params={"gaps": "1"})
    assert page.status_code == 200 and 'data-item="MOR10" data-not-shipped="20"' in page.text
    export = region.get("/reconciliation/export", params={"facility": "H1"})
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["item_code"], r["approved"], r["shipped"], r["approved_not_shipped"]) for r in rows] == [
        ("MOR10", "80", "60", "20")]
    assert region.get("/reconciliation/export", params={"facility": "B1"}).status_code == 403
    with live_server.Session() as s:  # some use in the last months, against 85 on hand: far above maximum
        post(s, entry("dispense", 5, prescription_id="RX1", at=datetime.now(timezone.utc) - timedelta(days=40)))
        s.commit()
    manager = live_server.login("manager_h1")
    levels = manager.get("/stock/H1/levels")
    assert levels.status_code == 200 and 'data-item="MOR10" data-status="' in levels.text
    token = csrf_of(levels.text)
    bad = manager.post("/stock/H1/levels", data={"csrf_token": token, "item_code": "MOR10", "max_months": "1",
                                                 "min_months": "2", "emergency_months": "0"})
    assert bad.status_code == 422
    ok = manager.post("/stock/H1/levels", data={"csrf_token": token, "item_code": "MOR10", "max_months": "2",
                                                "min_months": "1", "emergency_months": "0.5"})
    assert ok.status_code == 303
    summary = manager.get("/stock/H1/levels", headers={"HX-Request": "true"}).text
    assert "<html" not in summary and '<li data-status="above_max" data-count="1">' in summary
    assert 'hx-get="/stock/H1/levels"' in manager.get("/stock/H1").text  # the dashboard brings it in
    after = manager.get("/stock/H1/levels").text
    assert 'data-item="MOR10"' in after.split('id="sec-above_max"')[1].split("</section>")[0]
    assert 'data-item="MOR10" data-status="above_max"' in after


def pdf_text(body: bytes) -> str:
    import unicodedata

    from pypdf import PdfReader

    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)
    # Arabic comes out in its joined presentation forms; table cells wrap words onto new lines.
    return " ".join(unicodedata.normalize("NFKC", text).split())


def test_printed_documents_in_english_and_arabic(live_server):
    pharm, region, number = drafted(live_server, 45, "stock up")
    assert pharm.get(f"/requisitions/{number}/pdf/waybill").status_code == 404  # not shipped yet
    pharm.post(f"/api/v1/requisitions/{number}/submit")
    region.post(f"/api/v1/requisitions/{number}/approve", json={})
    region.post(f"/api/v1/requisitions/{number}/fulfil")
    r = pharm.get(f"/requisitions/{number}/pdf/waybill")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text = pdf_text(r.content)
    assert "Waybill WB-H1-2026-03" in text and "LB" in text and "LA" in text
    assert "30 tablet" in text and "15 tablet" in text  # FEFO: all of LB (Jan 2027), then 15 of LA
    req = pdf_text(pharm.get(f"/requisitions/{number}/pdf/requisition").content)
    assert "REQ-H1-2026-03" in req and "stock up" in req and "45" in req
    with live_server.Session() as s:
        from stock.models import User
        from sqlalchemy import select

        s.scalars(select(User).where(User.username == "pharm_h1")).one().language = "ar"
        s.commit()
    arabic = pdf_text(live_server.login("pharm_h1").get(f"/requisitions/{number}/pdf/waybill").content)
    assert "WB-H1-2026-03" in arabic and "بوليصة الشحن" in arabic
    sheet = pdf_text(live_server.login("manager_h1").get("/stock/H1/count-sheet").content)
    assert "MOR10" in sheet and "L1" in sheet and "90" not in sheet  # blind: no book quantity
    card = pdf_text(live_server.login("manager_h1").get("/stock/H1/card/MOR10/pdf").content)
    assert "100" in card and "LY0000000001" not in card


def test_quantities_in_packs_through_the_api_the_page_and_a_scan(live_server):
    from stock.requisitions.packs import add_pack

    with live_server.Session() as s:
        add_pack(s, "MOR10", Decimal(144), "box of 144", gtin="09501101530003")
        s.commit()
    pharm = api(live_server, "pharm_h1")
    number = pharm.post("/api/v1/requisitions", json={"facility_code": "H1", "period": "2026-03"}).json()["number"]
    r = pharm.post(f"/api/v1/requisitions/{number}/lines",
                   json={"lines": [{"item_code": "MOR10", "quantity": 2, "pack": "box of 144", "reason": "two boxes"}]})
    assert r.status_code == 200 and r.json()["lines"][0]["requested"] == 288
    bad = pharm.post(f"/api/v1/requisitions/{number}/lines",
                     json={"lines": [{"item_code": "MOR10", "quantity": 2, "pack": "crate", "reason": "x"}]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "pack"
    page = pharm.get(f"/requisitions/{number}")
    assert '<option value="box of 144">' in page.text
    r = pharm.post(f"/requisitions/{number}/change", data={"csrf_token": csrf_of(page.text), "qty_MOR10": "3",
                                                          "pack_MOR10": "box of 144", "reason_MOR10": "three"})
    assert r.status_code == 303
    assert pharm.get(f"/api/v1/requisitions/{number}").json()["lines"][0]["requested"] == 432
    found = pharm.get("/api/v1/packs/scan", params={"code": "(01)09501101530003(10)A1"}).json()
    assert found == {"item_code": "MOR10", "unit": "tablet", "pack": "box of 144", "units_per_pack": 144}
    assert pharm.get("/api/v1/packs/scan", params={"code": "(01)09501101530010"}).status_code == 404
    assert pharm.get("/api/v1/packs/scan", params={"code": "nonsense"}).status_code == 422


def test_requisition_as_fhir_supply_requests(live_server):
    from fhir.resources.bundle import Bundle

    pharm, region, number = drafted(live_server, 50, "new ward")
    draft = pharm.get(f"/api/v1/requisitions/{number}/fhir")
    assert draft.status_code == 200 and draft.headers["content-type"].startswith("application/fhir+json")
    pharm.post(f"/api/v1/requisitions/{number}/submit")
    region.post(f"/api/v1/requisitions/{number}/approve",
                json={"lines": [{"item_code": "MOR10", "quantity": 40, "reason": "store stock is low"}]})
    body = pharm.get(f"/api/v1/requisitions/{number}/fhir").json()
    Bundle.model_validate(body)  # a valid R5 Bundle of valid SupplyRequests
    res = next(e["resource"] for e in body["entry"] if e["resource"]["item"]["concept"]["coding"][0]["code"] == "MOR10")
    assert (res["status"], res["priority"], res["quantity"]["value"]) == ("active", "routine", 40)
    assert {x["url"]: x.get("valueQuantity", {}).get("value", x.get("valueString")) for x in res["extension"]} == {
        "urn:dawa:fhir:requested-quantity": 50, "urn:dawa:fhir:decision-reason": "store stock is low"}
    assert (res["deliverFrom"]["identifier"]["value"], res["deliverTo"]["identifier"]["value"]) == ("WH-C", "H1")
    assert api(live_server, "pharm_hc2").get(f"/api/v1/requisitions/{number}/fhir").status_code == 404


def test_timeline_notes_are_in_the_reader_s_language(live_server):
    pharm, region, number = drafted(live_server, 50, "new ward opens")
    assert pharm.post(f"/api/v1/requisitions/{number}/submit").status_code == 200
    assert region.post(f"/api/v1/requisitions/{number}/approve",
                       json={"lines": [{"item_code": "MOR10", "quantity": 40, "reason": "store stock is low"}]}
                       ).status_code == 200
    shipped = region.post(f"/api/v1/requisitions/{number}/fulfil").json()
    lb, la = (s["shipment_id"] for s in shipped["shipments"])
    assert pharm.post(f"/api/v1/requisitions/{number}/receive",
                      json={"lines": [{"shipment_id": lb, "received": 28, "damaged": 2},
                                      {"shipment_id": la, "received": 9}]}).status_code == 200
    said = {}
    for lang in ("en", "fr", "ar"):
        pharm.headers["Accept-Language"] = lang
        timeline = pharm.get(f"/api/v1/requisitions/{number}").json()["timeline"]
        said[lang] = {e["action"]: e["note"] for e in timeline}
        page = pharm.get(f"/requisitions/{number}").text
        for note in said[lang].values():
            if note:
                assert html.escape(note, quote=False) in page
    assert said["en"]["changed"] == "MOR10: 0 → 50 (new ward opens)"
    assert said["en"]["approved"] == "MOR10: 50 → 40 (store stock is low)"
    assert said["en"]["shipped"] == "waybill WB-H1-2026-03"
    assert said["en"]["received"] == "MOR10 lot LB: 28 of 30 received, 2 damaged; MOR10 lot LA: 9 of 10 received"
    assert said["fr"]["approved"] == "MOR10 : 50 → 40 (store stock is low)"  # the reason stays as written
    assert said["fr"]["received"] == "MOR10 lot LB : 28 reçus sur 30, dont 2 endommagés ; MOR10 lot LA : 9 reçus sur 10"
    assert said["fr"]["shipped"] == "bordereau de livraison WB-H1-2026-03"
    assert said["ar"]["received"] == "MOR10، الدفعة LB: استُلم 28 من 30، منها 2 تالف؛ MOR10، الدفعة LA: استُلم 9 من 10"
    assert said["ar"]["shipped"] == "بوليصة الشحن WB-H1-2026-03"
    parts = pharm.get(f"/api/v1/requisitions/{number}").json()["timeline"][1]["note_parts"]
    assert parts == [{"kind": "quantity", "item": "MOR10", "before": "0", "after": "50", "reason": "new ward opens"}]
