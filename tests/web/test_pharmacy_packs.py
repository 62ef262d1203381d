"""Receipts and transfers entered in packs on the pharmacy pages, stored in base units; a scan of a
pack's GTIN fills the item and the pack size. Real HTTP against the app, both databases."""

from __future__ import annotations

import re
from decimal import Decimal

from stock.requisitions.packs import add_pack
from tests.web.test_pharmacy import field_error, form_of, input_value, on_hand, stored

BOX = "05012345678917"
"""The GTIN printed on a box of 100 gloves."""


def with_packs(live_server) -> None:
    with live_server.Session() as s:
        add_pack(s, "GLOVE", Decimal(100), "box of 100", gtin=BOX)
        add_pack(s, "GLOVE", Decimal(10), "bag of 10")
        add_pack(s, "MOR10", Decimal(30), "strip box of 30")
        s.commit()


def chosen_pack(html: str) -> str | None:
    select = re.search(r'<select id="f-pack" name="pack".*?</select>', html, re.S)
    found = re.search(r'<option value="([^"]*)" selected>', select.group(0)) if select else None
    return found.group(1) if found else None


def test_a_receipt_in_packs_is_stored_in_base_units(live_server):
    with_packs(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/receipt")
    page = c.get("/pharmacy/H1/receipt").text
    assert 'id="pack-slot"' in page and 'hx-get="/pharmacy/H1/packs"' in page
    fragment = c.get("/pharmacy/H1/packs", params={"item_code": "GLOVE"}).text
    assert ">piece</option>" in fragment and 'value="box of 100"' in fragment and 'value="bag of 10"' in fragment
    data = {"csrf_token": token, "entry_id": entry_id, "item_code": "GLOVE", "lot_number": "G8",
            "expiry_date": "2029-05-31", "quantity": "3", "pack": "box of 100"}
    r = c.post("/pharmacy/H1/receipt", data={**data, "pack": "crate"})
    assert r.status_code == 422 and field_error(r.text, "pack") == "GLOVE comes in no pack called crate."
    assert chosen_pack(r.text) == "crate" and input_value(r.text, "quantity") == "3"
    r = c.post("/pharmacy/H1/receipt", data={**data, "quantity": "2.5"})
    assert r.status_code == 422 and field_error(r.text, "quantity") == "Enter a whole number of packs."
    r = c.post("/pharmacy/H1/receipt", data=data)
    assert r.status_code == 303, r.text[:500]
    assert stored(live_server, entry_id).quantity == 300 and on_hand(live_server, "H1", "G8") == 300
    token, entry_id = form_of(c, "/pharmacy/H1/receipt")
    r = c.post("/pharmacy/H1/receipt", data={**data, "csrf_token": token, "entry_id": entry_id, "pack": "",
                                             "quantity": "7"})
    assert r.status_code == 303 and on_hand(live_server, "H1", "G8") == 307  # no pack: the base unit


def test_a_scanned_box_fills_the_item_and_its_pack(live_server):
    with_packs(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/receipt")
    r = c.post("/pharmacy/H1/receipt", data={"csrf_token": token, "entry_id": entry_id,
                                             "scan": f"(01){BOX}(17)290531(10)G9"})
    assert r.status_code == 200, r.text[:500]
    assert input_value(r.text, "item_code") == "GLOVE" and input_value(r.text, "lot_number") == "G9"
    assert chosen_pack(r.text) == "box of 100"
    assert '&#34;pack&#34;: &#34;box of 100&#34;' in r.text or '"pack": "box of 100"' in r.text  # kept when htmx fills the list
    assert chosen_pack(c.get("/pharmacy/H1/packs", params={"item_code": "GLOVE", "pack": "box of 100"}).text) \
        == "box of 100"
    r = c.post("/pharmacy/H1/receipt", data={"csrf_token": token, "entry_id": entry_id, "item_code": "GLOVE",
                                             "lot_number": "G9", "expiry_date": "2029-05-31", "quantity": "4",
                                             "pack": "box of 100"})
    assert r.status_code == 303, r.text[:500]
    assert on_hand(live_server, "H1", "G9") == 400
    htmx = c.post("/pharmacy/H1/scan?page=receipt", data={"scan": f"(01){BOX}(10)G10"},
                  headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert htmx.status_code == 200 and chosen_pack(htmx.text) == "box of 100"
    # The dispensing form counts in base units: a box's GTIN there is not taken for one glove.
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = c.post("/pharmacy/H1/dispense", data={"csrf_token": token, "entry_id": entry_id, "scan": f"(01){BOX}"})
    assert field_error(r.text, "scan") == f"No item has the GTIN {BOX}."


def test_a_transfer_out_in_packs_is_stored_in_base_units(live_server):
    with_packs(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/transfer-out")
    assert 'id="pack-slot"' in c.get("/pharmacy/H1/transfer-out").text
    data = {"csrf_token": token, "entry_id": entry_id, "counterparty_code": "HC2", "item_code": "MOR10",
            "lot_number": "L1", "quantity": "1", "pack": "strip box of 30", "document_number": "TR-9"}
    r = c.post("/pharmacy/H1/transfer-out", data={**data, "pack": "box of 100"})  # a glove box, not MOR10's
    assert r.status_code == 422 and field_error(r.text, "pack") == "MOR10 comes in no pack called box of 100."
    r = c.post("/pharmacy/H1/transfer-out", data=data)
    assert r.status_code == 303, r.text[:500]
    e = stored(live_server, entry_id)
    assert (e.kind, e.quantity) == ("transfer_out", 30) and on_hand(live_server, "H1", "L1") == 60


def test_the_pack_list_is_for_staff_of_the_facility(live_server):
    with_packs(live_server)
    assert live_server.login("pharm_h1").get("/pharmacy/HC2/packs", params={"item_code": "GLOVE"}).status_code == 403
