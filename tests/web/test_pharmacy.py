"""The pharmacy pages through the live app: dispense (errors next to the field with input kept, the
warn-then-reason flow, retry safety), receipt, transfer send and receive, loss, count sheet, today's
entries with reversal, and facility scope. Both databases, real HTTP."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from stock.ledger import post
from stock.models import Balance, Facility, LedgerEntry, Lot, Patient
from tests.stock.builders import entry
from tests.web.conftest import csrf_of, page_csrf
from web.models import AuditRecord

ENTRY_ID = re.compile(r'name="entry_id" value="([^"]+)"')


def form_of(client, path: str) -> tuple[str, str]:
    """(csrf token, entry_id) of the form at ``path``."""
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return csrf_of(r.text), ENTRY_ID.search(r.text).group(1)


def on_hand(live_server, facility: str, lot: str) -> Decimal:
    with live_server.Session() as s:
        value = s.scalar(select(Balance.on_hand).join(Lot, Lot.id == Balance.lot_id)
                         .join(Facility, Facility.id == Balance.facility_id)
                         .where(Facility.code == facility, Lot.lot_number == lot))
    return Decimal(value or 0)


def stored(live_server, entry_id: str) -> LedgerEntry | None:
    with live_server.Session() as s:
        return s.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).one_or_none()


def audits(live_server, action: str, object_id: str) -> list[AuditRecord]:
    with live_server.Session() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action,
                                                        AuditRecord.object_id == object_id)))


def field_error(html: str, field: str) -> str | None:
    found = re.search(rf'id="f-{field}-error"[^>]*>([^<]*)<', html)
    return found.group(1) if found else None


def input_value(html: str, field: str) -> str | None:
    found = re.search(rf'<input id="f-{field}" name="{field}"[^>]*?value="([^"]*)"', html, re.S)
    return found.group(1) if found else None


def dispense(client, token: str, entry_id: str, **fields):
    data = {"csrf_token": token, "entry_id": entry_id, "health_card_id": "LY0000000001", "item_code": "MOR10",
            "lot_number": "L1", "quantity": "5", "prescription_id": "RX1"}
    data.update(fields)
    return client.post("/pharmacy/H1/dispense", data={k: v for k, v in data.items() if v is not None})


def test_pharmacist_goes_straight_to_their_facility_and_a_manager_picks_one(live_server):
    c = live_server.login("pharm_h1")
    r = c.get("/pharmacy?page=today")
    assert r.status_code == 303 and r.headers["location"] == "/pharmacy/H1/today"
    regional = live_server.login("manager_tripoli")
    r = regional.get("/pharmacy?page=loss")
    assert r.status_code == 303 and r.headers["location"] == "/pharmacy/choose?page=loss"
    r = regional.get(r.headers["location"])
    assert r.status_code == 200
    assert "/pharmacy/H1/loss" in r.text and "/pharmacy/HC2/loss" in r.text and "/pharmacy/B1/" not in r.text
    assert regional.get("/pharmacy/B1/dispense").status_code == 403
    assert live_server.login("auditor").get("/pharmacy").status_code == 403


def test_dispense_refused_for_insufficient_stock_keeps_the_input_then_succeeds(live_server):
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    assert on_hand(live_server, "H1", "L1") == 90
    r = dispense(c, token, entry_id, quantity="500")
    assert r.status_code == 409
    assert field_error(r.text, "quantity") == "Not enough stock in lot L1: 90 on hand, 500 asked."
    assert input_value(r.text, "quantity") == "500"
    assert input_value(r.text, "health_card_id") == "LY0000000001"
    assert input_value(r.text, "item_code") == "MOR10"
    assert f'value="{entry_id}"' in r.text  # the same form: nothing was recorded
    assert stored(live_server, entry_id) is None and on_hand(live_server, "H1", "L1") == 90

    # Other problems, each next to its field.
    r = dispense(c, token, entry_id, quantity="two", health_card_id="", item_code="NOPE")
    assert r.status_code == 422
    assert field_error(r.text, "quantity") == "Enter a number, such as 12 or 2.5."
    assert field_error(r.text, "health_card_id") == "This is required."
    assert field_error(r.text, "item_code") == "No item has the code NOPE."
    assert input_value(r.text, "quantity") == "two"

    r = dispense(c, token, entry_id, quantity="5")
    assert r.status_code == 303 and r.headers["location"] == f"/pharmacy/H1/dispense?done={entry_id}"
    page = c.get(r.headers["location"])
    assert 'id="done"' in page.text and "MOR10" in page.text
    assert f'value="{entry_id}"' not in page.text  # a fresh form, a fresh entry_id
    e = stored(live_server, entry_id)
    assert e.kind == "dispense" and e.quantity == 5 and e.recorded_by == "pharm_h1" and e.prescription_ref == "RX1"
    assert on_hand(live_server, "H1", "L1") == 85
    assert len(audits(live_server, "ledger_post", entry_id)) == 1


def test_retrying_the_same_form_posts_once(live_server):
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    for _ in range(3):  # a double click, then a retry after a timeout
        r = dispense(c, token, entry_id, quantity="4")
        assert r.status_code == 303 and r.headers["location"].endswith(f"done={entry_id}")
    with live_server.Session() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)
                        .where(LedgerEntry.entry_id == entry_id)) == 1
    assert on_hand(live_server, "H1", "L1") == 86
    assert len(audits(live_server, "ledger_post", entry_id)) == 1


@pytest.mark.parametrize("case", ["expired_lot", "unregistered_patient", "beyond_prescription"])
def test_a_policy_warning_needs_a_stated_reason_which_is_recorded(live_server, case):
    if case == "expired_lot":
        with live_server.Session() as s:
            post(s, entry("receipt", 30, facility="H1", item="MOR10", lot="OLD1", expiry_date=date(2020, 1, 31),
                          at=datetime(2019, 6, 1, tzinfo=timezone.utc)))  # received while good
            s.commit()
        fields = {"lot_number": "OLD1", "quantity": "3"}
    elif case == "unregistered_patient":
        fields = {"health_card_id": "LY9999999999", "prescription_id": ""}
    else:
        fields = {"quantity": "25"}  # 10 of RX1's 30 were dispensed before
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = dispense(c, token, entry_id, **fields)
    assert r.status_code == 200
    assert f'data-warning="{case}"' in r.text and 'name="reason"' in r.text and 'name="confirm"' in r.text
    for name, value in fields.items():
        if name != "prescription_id":
            assert f'value="{value}"' in r.text
    assert stored(live_server, entry_id) is None  # nothing recorded without a reason
    with live_server.Session() as s:  # not even the unknown patient
        assert s.scalars(select(Patient).where(Patient.health_card_id == "LY9999999999")).first() is None

    r = dispense(c, token, entry_id, confirm="1", reason="  ", **fields)
    assert r.status_code == 422 and field_error(r.text, "reason") == "State a reason to go ahead."
    assert stored(live_server, entry_id) is None

    reason = "Patient in pain, doctor confirmed by phone"
    r = dispense(c, token, entry_id, confirm="1", reason=reason, **fields)
    assert r.status_code == 303, r.text[:500]
    e = stored(live_server, entry_id)
    assert e.reason == reason and e.kind == "dispense"
    (record,) = audits(live_server, "ledger_post", entry_id)
    assert case in record.detail and reason in record.detail


def test_lot_suggestions_are_first_expiry_first_out_and_items_are_those_held(live_server):
    with live_server.Session() as s:
        post(s, [entry("receipt", 5, facility="H1", item="MOR10", lot="LATE", expiry_date=date(2030, 1, 31)),
                 entry("receipt", 5, facility="H1", item="MOR10", lot="SOON", expiry_date=date(2027, 1, 31)),
                 entry("receipt", 5, facility="H1", item="MOR10", lot="GONE", expiry_date=date(2021, 1, 31),
                       at=datetime(2020, 6, 1, tzinfo=timezone.utc))])  # received while good
        s.commit()
    c = live_server.login("pharm_h1")
    r = c.get("/pharmacy/H1/lots", params={"item_code": "MOR10"}, headers={"HX-Request": "true"})
    assert r.status_code == 200
    order = re.findall(r'<option value="([^"]*)"', r.text)
    assert order == ["SOON", "L1", "LATE", "GONE"]  # L1 expires 2028-01-31; the expired lot last
    assert re.search(r'<option value="SOON" selected>', r.text) and "EXPIRED" in r.text
    items = c.get("/pharmacy/H1/items", params={"item_code": "mor"}).text
    assert 'value="MOR10"' in items
    assert 'value="INSG"' not in c.get("/pharmacy/H1/items", params={"item_code": "ins"}).text  # not held at H1
    assert 'value="INSG"' in c.get("/pharmacy/H1/items", params={"item_code": "ins", "all": "1"}).text
    rx = c.post("/pharmacy/H1/prescriptions", data={"health_card_id": "LY0000000001", "item_code": "MOR10"},
                headers={"X-CSRF-Token": page_csrf(c, "/pharmacy/H1/dispense"), "HX-Request": "true"}).text
    assert 'value="RX1" selected' in rx and "20" in rx  # 20 of 30 left
    from stock.pseudonyms import patient_key, pseudonym

    key = patient_key(live_server.app.state.settings)
    assert audits(live_server, "patient_prescriptions_read", pseudonym("LY0000000001", key))


def test_receipt_then_loss(live_server):
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/receipt")
    data = {"csrf_token": token, "entry_id": entry_id, "item_code": "GLOVE", "lot_number": "G7",
            "quantity": "200", "counterparty_code": "WH-C", "document_number": "DN-1"}
    r = c.post("/pharmacy/H1/receipt", data={**data, "expiry_date": ""})
    assert r.status_code == 422 and "expiry_date is required" in field_error(r.text, "expiry_date")
    assert input_value(r.text, "lot_number") == "G7"
    # An expired lot is received only for destruction.
    r = c.post("/pharmacy/H1/receipt", data={**data, "expiry_date": "2020-05-31"})
    assert r.status_code == 422 and "an expired lot is received only for destruction" in field_error(r.text, "expiry_date")
    assert stored(live_server, entry_id) is None
    r = c.post("/pharmacy/H1/receipt", data={**data, "expiry_date": "2029-05-31"})
    assert r.status_code == 303
    assert on_hand(live_server, "H1", "G7") == 200
    assert stored(live_server, entry_id).document_number == "DN-1"

    token, entry_id = form_of(c, "/pharmacy/H1/loss")
    data = {"csrf_token": token, "entry_id": entry_id, "item_code": "GLOVE", "lot_number": "G7", "quantity": "12"}
    r = c.post("/pharmacy/H1/loss", data={**data, "reason": "borrowed"})
    assert r.status_code == 422 and field_error(r.text, "reason") == "Choose one of the listed reasons."
    r = c.post("/pharmacy/H1/loss", data={**data, "reason": "damaged"})
    assert r.status_code == 303
    e = stored(live_server, entry_id)
    assert e.kind == "loss" and e.reason == "damaged" and e.effect == -12
    assert on_hand(live_server, "H1", "G7") == 188
    assert audits(live_server, "ledger_post", entry_id)


def test_expired_lot_received_for_destruction(live_server):
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/receipt")
    data = {"csrf_token": token, "entry_id": entry_id, "item_code": "GLOVE", "lot_number": "OLD-9",
            "quantity": "40", "expiry_date": "2020-05-31"}
    r = c.post("/pharmacy/H1/receipt", data=data)
    assert r.status_code == 422 and 'name="for_destruction"' in r.text
    r = c.post("/pharmacy/H1/receipt", data={**data, "for_destruction": "1"})
    assert r.status_code == 303
    e = stored(live_server, entry_id)
    assert (e.kind, e.quantity, e.reason) == ("receipt", 40, "destruction")


def test_transfer_sent_then_received_at_the_other_end(live_server):
    sender = live_server.login("pharm_h1")
    token, entry_id = form_of(sender, "/pharmacy/H1/transfer-out")
    r = sender.post("/pharmacy/H1/transfer-out", data={
        "csrf_token": token, "entry_id": entry_id, "counterparty_code": "HC2", "item_code": "MOR10",
        "lot_number": "L1", "quantity": "30", "document_number": "TR-77"})
    assert r.status_code == 303
    assert on_hand(live_server, "H1", "L1") == 60

    receiver = live_server.login("pharm_hc2")
    page = receiver.get("/pharmacy/HC2/transfers-in")
    assert page.status_code == 200 and f'data-transfer="{entry_id}"' in page.text and "TR-77" in page.text
    # H1's pharmacist cannot see HC2's arrivals.
    assert sender.get("/pharmacy/HC2/transfers-in").status_code == 403
    row_id = re.search(rf'name="entry_id" value="([^"]+)">\s*<input type="hidden" name="out_entry_id" '
                       rf'value="{entry_id}"', page.text).group(1)
    data = {"csrf_token": csrf_of(page.text), "entry_id": row_id, "out_entry_id": entry_id}
    r = receiver.post("/pharmacy/HC2/transfers-in", data={**data, "quantity": "31"})
    assert r.status_code == 422 and "More than was sent (30)." in r.text
    # Short: the reason is asked for, and what is missing is recorded as a loss on arrival.
    r = receiver.post("/pharmacy/HC2/transfers-in", data={**data, "quantity": "28"})
    assert r.status_code == 422 and "28 received of 30 sent: state why the rest is missing." in r.text
    assert stored(live_server, row_id) is None
    short = {**data, "quantity": "28", "reason": "carton crushed in transit"}
    r = receiver.post("/pharmacy/HC2/transfers-in", data=short)
    assert r.status_code == 303
    r = receiver.post("/pharmacy/HC2/transfers-in", data=short)  # a retry
    assert r.status_code == 303
    e = stored(live_server, row_id)
    assert (e.kind, e.quantity, e.counterparty, e.document_number) == ("transfer_in", 30, "H1", "TR-77")
    with live_server.Session() as s:
        losses = s.execute(select(LedgerEntry.quantity, LedgerEntry.reason, LedgerEntry.document_number)
                           .join(Facility, Facility.id == LedgerEntry.facility_id)
                           .where(Facility.code == "HC2", LedgerEntry.kind == "loss")).all()
    assert losses == [(2, "short on arrival: carton crushed in transit", "TR-77")]
    assert on_hand(live_server, "HC2", "L1") == 28
    assert f'data-transfer="{entry_id}"' not in receiver.get("/pharmacy/HC2/transfers-in").text


def test_count_sheet_posts_the_lines_filled_in_together(live_server):
    c = live_server.login("manager_h1")
    page = c.get("/pharmacy/H1/count")
    assert page.status_code == 200
    with live_server.Session() as s:
        lot_id = s.scalar(select(Lot.id).where(Lot.lot_number == "L1"))
    sheet = re.search(r'name="sheet_id" value="([^"]+)"', page.text).group(1)
    data = {"csrf_token": csrf_of(page.text), "sheet_id": sheet}
    r = c.post("/pharmacy/H1/count", data={**data, f"counted_{lot_id}": "-3"})
    assert r.status_code == 422 and field_error(r.text, f"counted_{lot_id}") == "A counted quantity cannot be negative."
    assert 'value="-3"' in r.text
    r = c.post("/pharmacy/H1/count", data={**data, f"counted_{lot_id}": "87"})
    assert r.status_code == 303 and r.headers["location"] == f"/pharmacy/H1/count?done=1&sheet={sheet}"
    r = c.post("/pharmacy/H1/count", data={**data, f"counted_{lot_id}": "87"})  # a retry
    assert r.status_code == 303
    assert on_hand(live_server, "H1", "L1") == 87
    with live_server.Session() as s:
        counts = list(s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "count")))
    assert len(counts) == 1 and counts[0].book_quantity == 90 and counts[0].effect == -3
    r = c.post("/pharmacy/H1/count", data={"csrf_token": data["csrf_token"], "sheet_id": "other"})
    assert r.status_code == 422 and "Enter at least one counted quantity." in r.text


def test_reversal_from_todays_entries(live_server):
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    assert dispense(c, token, entry_id, quantity="6").status_code == 303
    page = c.get("/pharmacy/H1/today")
    assert f'data-entry="{entry_id}"' in page.text
    new_id = re.search(rf'name="entry_id" value="{entry_id}">\s*<input type="hidden" name="new_id" '
                       r'value="([^"]+)"', page.text).group(1)
    data = {"csrf_token": csrf_of(page.text), "entry_id": entry_id, "new_id": new_id}
    r = c.post("/pharmacy/H1/reverse", data={**data, "reason": ""})
    assert r.status_code == 422 and "State a reason to go ahead." in r.text
    r = c.post("/pharmacy/H1/reverse", data={**data, "reason": "wrong patient card"})
    assert r.status_code == 303
    assert c.post("/pharmacy/H1/reverse", data={**data, "reason": "wrong patient card"}).status_code == 303  # retry
    rev = stored(live_server, new_id)
    assert rev.reverses == entry_id and rev.reason == "wrong patient card" and rev.effect == 6
    assert on_hand(live_server, "H1", "L1") == 90
    assert audits(live_server, "ledger_reverse", entry_id)
    page = c.get("/pharmacy/H1/today").text
    assert f"Reversed by {new_id}" in page

    again = {**data, "new_id": "another-try", "reason": "again"}
    r = c.post("/pharmacy/H1/reverse", data=again)
    assert r.status_code == 409 and f"Entry {entry_id} was already reversed." in r.text
    r = c.post("/pharmacy/H1/reverse", data={**again, "entry_id": new_id})
    assert r.status_code == 409
    assert f"Entry {new_id} is itself a reversal (of {entry_id}) and cannot be reversed" in r.text
    assert stored(live_server, "another-try") is None


def test_reversal_only_by_the_facilitys_own_staff(live_server):
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    assert dispense(c, token, entry_id).status_code == 303
    data = {"entry_id": entry_id, "new_id": "rev-x", "reason": "mistake"}
    other = live_server.login("pharm_hc2")
    r = other.post("/pharmacy/H1/reverse", data={**data, "csrf_token": csrf_of(other.get("/", follow_redirects=True).text)})
    assert r.status_code == 403
    r = other.post("/pharmacy/HC2/reverse", data={**data, "csrf_token": csrf_of(other.get("/", follow_redirects=True).text)})
    assert r.status_code == 404  # not an entry of HC2
    admin = live_server.login("admin")
    assert 'name="new_id"' not in admin.get("/pharmacy/H1/today").text  # sees the entries, no reverse form
    r = admin.post("/pharmacy/H1/reverse", data={**data, "csrf_token": csrf_of(admin.get("/", follow_redirects=True).text)})
    assert r.status_code == 403
    assert stored(live_server, "rev-x") is None


def test_a_pharmacist_can_neither_see_nor_post_for_another_facility(live_server):
    c = live_server.login("pharm_h1")
    for path in ("dispense", "receipt", "transfer-out", "transfers-in", "loss", "count", "today",
                 "lots?item_code=MOR10", "items"):
        r = c.get(f"/pharmacy/HC2/{path}")
        assert r.status_code == 403 and "facility HC2 is outside your scope" in r.text, path
    token = csrf_of(c.get("/", follow_redirects=True).text)
    r = c.post("/pharmacy/HC2/prescriptions", data={"csrf_token": token, "health_card_id": "LY0000000001",
                                                    "item_code": "MOR10"})
    assert r.status_code == 403 and "facility HC2 is outside your scope" in r.text
    r = c.post("/pharmacy/HC2/dispense", data={"csrf_token": token, "entry_id": "x-1", "health_card_id": "LY0000000001",
                                               "item_code": "MOR10", "lot_number": "L2", "quantity": "1"})
    assert r.status_code == 403 and stored(live_server, "x-1") is None
    r = c.post("/pharmacy/HC2/receipt", data={"csrf_token": token, "entry_id": "x-2", "item_code": "MOR10",
                                              "lot_number": "L2", "quantity": "1"})
    assert r.status_code == 403 and stored(live_server, "x-2") is None
    assert on_hand(live_server, "HC2", "L2") == 50
    assert c.get("/pharmacy/NOWHERE/dispense").status_code == 404


def test_forms_without_the_csrf_token_are_refused(live_server):
    c = live_server.login("pharm_h1")
    _, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = c.post("/pharmacy/H1/dispense", data={"entry_id": entry_id, "health_card_id": "LY0000000001",
                                              "item_code": "MOR10", "lot_number": "L1", "quantity": "1"})
    assert r.status_code == 403 and stored(live_server, entry_id) is None


def test_pages_render_in_french_and_arabic(live_server):
    c = live_server.login("pharm_h1")
    for lang in ("fr", "ar"):
        assert c.post("/language", data={"lang": lang, "csrf_token": csrf_of(c.get("/", follow_redirects=True).text)}).status_code == 303
        for path in ("dispense", "receipt", "transfer-out", "transfers-in", "loss", "count", "today"):
            r = c.get(f"/pharmacy/H1/{path}")
            assert r.status_code == 200 and f'lang="{lang}"' in r.text, (lang, path)


# --- the Scan field (GS1 DataMatrix) --------------------------------------------------------------

PACK = "]d2010501234567890017280131" "10L1\x1d21PK0001"
"""A MOR10 pack of lot L1 (expiring 2028-01-31), serial PK0001, as a scanner types it."""


def with_gtins(live_server):
    from sqlalchemy import update

    from stock.models import Item

    with live_server.Session() as s:
        s.execute(update(Item).where(Item.code == "MOR10").values(gtin="05012345678900"))
        s.execute(update(Item).where(Item.code == "INSG").values(gtin="09501101530003"))
        s.commit()


def hidden_value(html: str, name: str) -> str | None:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', html)
    return found.group(1) if found else None


def selected_lot(html: str) -> str | None:
    found = re.search(r'<option value="([^"]*)" selected>', html)
    return found.group(1) if found else None


def test_scan_without_scripts_fills_the_dispense_form_then_records_the_serial(live_server):
    with_gtins(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    page = c.get("/pharmacy/H1/dispense").text
    assert 'id="f-scan"' in page and 'data-scan="1"' in page and 'hx-trigger="scanned"' in page
    # The scanner's Enter submits the form with only the scan in it: nothing is recorded yet.
    r = c.post("/pharmacy/H1/dispense", data={"csrf_token": token, "entry_id": entry_id, "scan": PACK})
    assert r.status_code == 200, r.text[:500]
    assert input_value(r.text, "item_code") == "MOR10" and selected_lot(r.text) == "L1"
    assert hidden_value(r.text, "serial_number") == "PK0001"
    assert hidden_value(r.text, "scan_gtin") == "05012345678900"
    assert input_value(r.text, "scan") == ""  # ready for the next pack
    assert "Scanned pack: GTIN 05012345678900" in r.text and "serial PK0001" in r.text
    assert field_error(r.text, "quantity") is None and field_error(r.text, "health_card_id") is None
    assert 'id="f-health_card_id" name="health_card_id" type="text" required autocomplete="off" autofocus' in r.text
    assert stored(live_server, entry_id) is None
    r = dispense(c, token, entry_id, quantity="1", serial_number="PK0001", scan_gtin="05012345678900")
    assert r.status_code == 303, r.text[:500]
    e = stored(live_server, entry_id)
    assert (e.serial_number, e.quantity, e.kind) == ("PK0001", 1, "dispense")


def test_scan_with_the_rest_filled_records_at_once(live_server):
    with_gtins(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = dispense(c, token, entry_id, item_code="", lot_number="", quantity="1", scan=PACK)
    assert r.status_code == 303, r.text[:500]
    assert stored(live_server, entry_id).serial_number == "PK0001"


def test_scan_through_htmx_fills_the_form_and_keeps_what_was_typed(live_server):
    with_gtins(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = c.post("/pharmacy/H1/scan?page=dispense",
               data={"entry_id": entry_id, "scan": "(01)05012345678900(17)280131(10)L1(21)PK0002",
                     "health_card_id": "LY0000000001"},
               headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 200
    assert 'id="dispense-form"' in r.text
    assert input_value(r.text, "health_card_id") == "LY0000000001"
    assert input_value(r.text, "item_code") == "MOR10" and selected_lot(r.text) == "L1"
    assert hidden_value(r.text, "serial_number") == "PK0002"
    assert f'value="{entry_id}"' in r.text
    assert 'id="f-quantity" name="quantity" type="text" required inputmode="decimal" autocomplete="off" autofocus' in r.text
    assert stored(live_server, entry_id) is None
    # Without the CSRF token the scan is refused like any other post.
    assert c.post("/pharmacy/H1/scan?page=dispense", data={"scan": PACK}).status_code == 403


@pytest.mark.parametrize("scan,message", [
    ("(01)09501101530010(10)X", "No item has the GTIN 09501101530010."),
    ("(01)05012345678901(10)X", "The GTIN 05012345678901 in this barcode has a wrong check digit: scan again."),
    ("hello", "This is not a GS1 barcode that can be read. Scan again, or fill in the fields by hand."),
    ("(10)L1(21)X", "This barcode holds no GTIN (01): it is not a medicine pack's code."),
])
def test_bad_scan_shown_next_to_the_field_with_the_input_kept(live_server, scan, message):
    with_gtins(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = c.post("/pharmacy/H1/dispense", data={"csrf_token": token, "entry_id": entry_id, "scan": scan,
                                              "health_card_id": "LY0000000001"})
    assert r.status_code == 422
    assert field_error(r.text, "scan") == message.replace("'", "&#39;")
    assert input_value(r.text, "scan") == scan.replace("'", "&#39;")
    assert input_value(r.text, "health_card_id") == "LY0000000001"
    htmx = c.post("/pharmacy/H1/scan?page=dispense", data={"entry_id": entry_id, "scan": scan},
                  headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert htmx.status_code == 200 and field_error(htmx.text, "scan") == message.replace("'", "&#39;")
    assert stored(live_server, entry_id) is None


def test_scanned_lot_not_held_is_named(live_server):
    with_gtins(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = c.post("/pharmacy/H1/dispense", data={"csrf_token": token, "entry_id": entry_id,
                                              "scan": "(01)05012345678900(10)L2(21)PK9"})
    assert field_error(r.text, "lot_number") == "The scanned lot L2 of MOR10 is not held here."


def test_serial_of_another_item_refused(live_server):
    with_gtins(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = dispense(c, token, entry_id, quantity="1", serial_number="PK0001", scan_gtin="09501101530003")
    assert r.status_code == 422
    assert field_error(r.text, "scan") == ("The scanned pack is 09501101530003, not MOR10: scan it again or "
                                          "change the item.")
    assert stored(live_server, entry_id) is None


def test_receipt_scan_fills_item_lot_and_expiry_and_records_the_serial(live_server):
    with_gtins(live_server)
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/receipt")
    r = c.post("/pharmacy/H1/receipt", data={"csrf_token": token, "entry_id": entry_id,
                                             "scan": "0109501101530003172706001" "0NEWLOT\x1d21BOX-7"})
    assert r.status_code == 200, r.text[:500]
    assert input_value(r.text, "item_code") == "INSG" and input_value(r.text, "lot_number") == "NEWLOT"
    assert input_value(r.text, "expiry_date") == "2027-06-30"  # day 00: the month's last day
    assert hidden_value(r.text, "serial_number") == "BOX-7"
    r = c.post("/pharmacy/H1/receipt", data={"csrf_token": token, "entry_id": entry_id, "item_code": "INSG",
                                             "lot_number": "NEWLOT", "expiry_date": "2027-06-30", "quantity": "10",
                                             "serial_number": "BOX-7", "scan_gtin": "09501101530003"})
    assert r.status_code == 303, r.text[:500]
    e = stored(live_server, entry_id)
    assert (e.kind, e.serial_number, e.quantity) == ("receipt", "BOX-7", 10)
    htmx = c.post("/pharmacy/H1/scan?page=receipt", data={"scan": "(01)09501101530003(17)270615(10)B2"},
                  headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert htmx.status_code == 200 and 'id="receipt-form"' in htmx.text
    assert input_value(htmx.text, "expiry_date") == "2027-06-15" and input_value(htmx.text, "lot_number") == "B2"


def test_a_form_waiting_for_the_ledger_does_not_hold_up_other_requests(live_server):
    """While another writer holds H1's chain (on SQLite: the database's write lock), a dispense
    posted for H1 waits for it in a worker thread; the server keeps answering everyone else."""
    import threading
    import time

    from stock.models import ChainHead

    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    other = live_server.client()
    holder = live_server.app.state.sessions()
    h1 = holder.scalar(select(Facility.id).where(Facility.code == "H1"))
    holder.execute(select(ChainHead).where(ChainHead.facility_id == h1).with_for_update()).all()
    answer: list[int] = []
    waiting = threading.Thread(target=lambda: answer.append(dispense(c, token, entry_id).status_code))
    try:
        waiting.start()
        time.sleep(0.5)  # the dispense is now queued behind the holder
        assert not answer
        started = time.monotonic()
        assert other.get("/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
    finally:
        holder.rollback()
        holder.close()
        waiting.join(30)
    assert answer == [303]
    assert stored(live_server, entry_id) is not None


def test_counts_are_blind_and_a_count_far_from_the_books_is_confirmed(live_server):
    """The sheet shows no book quantity; a count far from the books (200 against 90) is asked to be
    confirmed before it is posted; once posted, the sheet shows the books and the difference."""
    c = live_server.login("pharm_h1")
    page = c.get("/pharmacy/H1/count")
    assert "On the books" not in page.text and ">90<" not in page.text
    with live_server.Session() as s:
        lot_id = s.scalar(select(Lot.id).where(Lot.lot_number == "L1"))
    sheet = re.search(r'name="sheet_id" value="([^"]+)"', page.text).group(1)
    data = {"csrf_token": csrf_of(page.text), "sheet_id": sheet, f"counted_{lot_id}": "200"}
    r = c.post("/pharmacy/H1/count", data=data)
    assert r.status_code == 200 and "Far from the books" in field_error(r.text, f"counted_{lot_id}")
    assert 'name="confirm" value="1"' in r.text and ">90<" not in r.text
    assert on_hand(live_server, "H1", "L1") == 90  # nothing posted yet
    r = c.post("/pharmacy/H1/count", data={**data, "confirm": "1"})
    assert r.status_code == 303
    done = c.get(r.headers["location"]).text
    results = re.search(r'<table class="compact" id="count-results">.*?</table>', done, re.S).group(0)
    cells = re.findall(r'<td class="num">([^<]*)</td>', results)
    assert cells == ["200", "90", "110"]
    assert on_hand(live_server, "H1", "L1") == 200


def test_a_controlled_item_without_a_prescription_needs_a_paper_number_or_a_reason(live_server):
    """MOR10 is controlled: "No prescription" does not go out at once. A paper prescription's number
    typed in is recorded as the entry's prescription; otherwise the emergency is stated as the reason."""
    c = live_server.login("pharm_h1")
    token, entry_id = form_of(c, "/pharmacy/H1/dispense")
    r = dispense(c, token, entry_id, prescription_id="")
    assert r.status_code == 200 and 'data-warning="no_prescription"' in r.text and 'name="reason"' in r.text
    assert stored(live_server, entry_id) is None
    r = dispense(c, token, entry_id, prescription_id="", paper_prescription="PAPER-2026-118")
    assert r.status_code == 303, r.text[:500]
    assert stored(live_server, entry_id).prescription_ref == "PAPER-2026-118"
    token, other = form_of(c, "/pharmacy/H1/dispense")
    r = dispense(c, token, other, prescription_id="", confirm="1", reason="emergency: post-operative pain, night")
    assert r.status_code == 303
    e = stored(live_server, other)
    assert e.prescription_ref is None and e.reason.startswith("emergency")
