"""A pack's linear barcode (a bare EAN-13 / UPC-A / EAN-8) at the counter: real products whose
digits also read as GS1 application identifiers (4006381333931 would read as AI 400) fill the
dispense form like a DataMatrix does. Both databases, real HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from stock.models import Item
from tests.web.test_pharmacy import form_of, input_value, field_error, stored


@pytest.mark.parametrize("bare", ["4006381333931", "036000291452", "96385074"])
def test_bare_gtin_scanned_at_the_counter_fills_the_item(live_server, bare):
    with live_server.Session() as s:
        s.execute(update(Item).where(Item.code == "MOR10").values(gtin=bare.zfill(14)))
        s.commit()
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = c.post("/pharmacy/H1/dispense", data={"csrf_token": token, "entry_id": entry_id, "scan": bare})
    assert r.status_code == 200, r.text[:500]
    assert field_error(r.text, "scan") is None
    assert input_value(r.text, "item_code") == "MOR10"
    assert stored(live_server, entry_id) is None


def test_bare_gtin_with_a_wrong_check_digit_is_named(live_server):
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = c.post("/pharmacy/H1/dispense", data={"csrf_token": token, "entry_id": entry_id, "scan": "4006381333932"})
    assert r.status_code == 422
    assert field_error(r.text, "scan") == "The GTIN 04006381333932 in this barcode has a wrong check digit: scan again."
