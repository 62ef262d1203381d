"""The counter's visit through the live app, both databases, real HTTP: a four-item visit taking
from several lots in one submit, the first-expiry-first split shown and changed by hand, a refusal
on one line recording nothing, a retry and a double submit recording once, the controls of the
single dispense on every line, and the patient's last 90 days read beside the form, audited."""

from __future__ import annotations

import json
import re
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from stock.ledger import post
from stock.masterdata import add_item
from stock.models import LedgerEntry
from tests.stock.builders import entry
from tests.web.conftest import csrf_of
from tests.web.test_pharmacy import PACK, audits, on_hand, with_gtins
from web.models import AuditRecord

CARD = "LY0000000001"
VISIT_ID = re.compile(r'name="visit_id" value="([^"]+)"')
TODAY = datetime.now(timezone.utc).date()


def soon(days: int) -> date:
    return TODAY + timedelta(days=days)


@pytest.fixture
def counter(live_server):
    """H1 stocked for a visit: paracetamol in a nearly empty first-expiry lot (5), a later one (300)
    and an expired one (50, never proposed); amoxicillin and insulin in two lots each; gloves in one."""
    with live_server.Session() as s:
        add_item(s, "PCM500", "Paracetamol 500 mg tablet", "tablet")
        add_item(s, "AMX250", "Amoxicillin 250 mg capsule", "capsule")
        s.commit()
        long_ago = datetime.now(timezone.utc) - timedelta(days=400)
        post(s, [entry("receipt", 50, item="PCM500", lot="P-OLD", expiry_date=TODAY - timedelta(days=20), at=long_ago),
                 entry("receipt", 5, item="PCM500", lot="P-A", expiry_date=soon(40)),
                 entry("receipt", 300, item="PCM500", lot="P-B", expiry_date=soon(400)),
                 entry("receipt", 20, item="AMX250", lot="A-1", expiry_date=soon(30)),
                 entry("receipt", 40, item="AMX250", lot="A-2", expiry_date=soon(200)),
                 entry("receipt", 3, item="INSG", lot="I-1", expiry_date=soon(60)),
                 entry("receipt", 10, item="INSG", lot="I-2", expiry_date=soon(90)),
                 entry("receipt", 100, item="GLOVE", lot="G-1", expiry_date=soon(700))])
        s.commit()
    c = live_server.login("pharm_h1")
    return c


def visit_form(client) -> tuple[str, str, str]:
    r = client.get("/pharmacy/H1/visit")
    assert r.status_code == 200, r.text[:300]
    return r.text, csrf_of(r.text), VISIT_ID.search(r.text).group(1)


def four_lines(**over) -> dict:
    data = {"health_card_id": CARD,
            "l1_item": "PCM500", "l1_quantity": "150",
            "l2_item": "AMX250", "l2_quantity": "30",
            "l3_item": "INSG", "l3_quantity": "5",
            "l4_item": "GLOVE", "l4_quantity": "10"}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


def submit(client, token: str, visit_id: str, **fields):
    return client.post("/pharmacy/H1/visit", data={"csrf_token": token, "visit_id": visit_id, **fields})


def visit_entries(live_server, visit_id: str) -> dict[str, tuple]:
    with live_server.Session() as s:
        rows = s.execute(select(LedgerEntry.entry_id, LedgerEntry.quantity, LedgerEntry.lot_id, LedgerEntry.reason)
                         .where(LedgerEntry.entry_id.like(visit_id + "-%"))).all()
        from stock.models import Lot
        lots = {lot.id: lot.lot_number for lot in s.scalars(select(Lot))}
    return {eid: (lots[lot_id], Decimal(q), reason) for eid, q, lot_id, reason in rows}


def history_reads(live_server) -> list[AuditRecord]:
    with live_server.Session() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == "patient_history_read")
                              .order_by(AuditRecord.id)))


def field_error(html: str, field: str) -> str | None:
    found = re.search(rf'id="f-{field}-error"[^>]*>([^<]*)<', html)
    return found.group(1) if found else None


def test_a_four_item_visit_takes_from_several_lots_in_one_submit(live_server, counter):
    page, token, visit_id = visit_form(counter)
    assert 'name="l4_item"' in page  # four lines from the start
    r = submit(counter, token, visit_id, **four_lines())
    assert r.status_code == 303, (r.status_code, r.text[:2000])
    assert r.headers["location"] == f"/pharmacy/H1/visit?done={visit_id}"
    got = visit_entries(live_server, visit_id)
    # 150 tablets: the first-expiry lot holds 5, so 145 come from the next; the expired lot is untouched.
    assert {k: v[:2] for k, v in got.items()} == {
        f"{visit_id}-1-1": ("P-A", 5), f"{visit_id}-1-2": ("P-B", 145),
        f"{visit_id}-2-1": ("A-1", 20), f"{visit_id}-2-2": ("A-2", 10),
        f"{visit_id}-3-1": ("I-1", 3), f"{visit_id}-3-2": ("I-2", 2),
        f"{visit_id}-4-1": ("G-1", 10)}
    assert on_hand(live_server, "H1", "P-OLD") == 50 and on_hand(live_server, "H1", "P-B") == 155
    done = counter.get(r.headers["location"]).text
    assert "7 entries recorded for this visit" in done
    assert done.count("<tr data-entry=") == 7
    posts = [json.loads(audits(live_server, "ledger_post", eid)[0].detail) for eid in got]
    assert {(d["visit"], d["kind"]) for d in posts} == {(visit_id, "dispense")}


def test_the_proposed_split_is_shown_and_can_be_changed_lot_by_lot(live_server, counter):
    _, token, visit_id = visit_form(counter)
    r = submit(counter, token, visit_id, action="check", health_card_id=CARD, l1_item="PCM500", l1_quantity="150")
    assert r.status_code == 200
    table = re.search(r'<table class="compact visit-lots" id="lots-1">.*?</table>', r.text, re.S).group(0)
    assert "P-OLD" not in table  # expired lots are never proposed
    assert [lot for lot in re.findall(r'<tr data-lot="([^"]+)">', table)] == ["P-A", "P-B"]
    assert re.search(r'name="l1_take1"[^>]*value="5"', table) and re.search(r'name="l1_take2"[^>]*value="145"', table)
    assert visit_entries(live_server, visit_id) == {}  # proposing records nothing
    # All 150 from the later lot instead (the pharmacist holds that box): recorded as chosen.
    r = submit(counter, token, visit_id, health_card_id=CARD, l1_item="PCM500", l1_quantity="150", l1_split_for="150",
               l1_lot1="P-A", l1_take1="0", l1_lot2="P-B", l1_take2="150")
    assert r.status_code == 303, r.text[:2000]
    assert {k: v[:2] for k, v in visit_entries(live_server, visit_id).items()} == {f"{visit_id}-1-1": ("P-B", 150)}
    assert on_hand(live_server, "H1", "P-A") == 5
    [record] = audits(live_server, "ledger_post", f"{visit_id}-1-1")
    assert json.loads(record.detail)["overridden"] is True


def test_a_changed_split_that_does_not_add_up_is_refused_on_its_line(live_server, counter):
    _, token, visit_id = visit_form(counter)
    r = submit(counter, token, visit_id, **four_lines(l2_split_for="30", l2_lot1="A-1", l2_take1="10",
                                                     l2_lot2="A-2", l2_take2="5"))
    assert r.status_code == 422
    assert "The lots add up to 15, not the quantity 30." in field_error(r.text, "l2_quantity")
    assert 'href="#f-l2_quantity">Line 2, Quantity</a>' in r.text
    assert visit_entries(live_server, visit_id) == {}
    # A quantity changed after the split was shown gets a fresh proposal instead.
    r = submit(counter, token, visit_id, **four_lines(l2_quantity="25", l2_split_for="30", l2_lot1="A-1",
                                                     l2_take1="10", l2_lot2="A-2", l2_take2="5"))
    assert r.status_code == 303
    assert visit_entries(live_server, visit_id)[f"{visit_id}-2-2"][:2] == ("A-2", 5)


@pytest.mark.parametrize("bad, field, message", [
    ({"l3_quantity": "14"}, "l3_quantity", "Only 13 usable on hand (expired lots not counted), 14 asked."),
    ({"l1_quantity": "306"}, "l1_quantity", "Only 305 usable on hand (expired lots not counted), 306 asked."),
    ({"l2_item": "NOPE"}, "l2_item", "No item has the code NOPE."),
    ({"l4_quantity": "-1"}, "l4_quantity", "Enter a quantity greater than zero."),
    ({"health_card_id": ""}, "health_card_id", "This is required."),
])
def test_a_refusal_on_any_line_names_it_and_records_nothing(live_server, counter, bad, field, message):
    before = {lot: on_hand(live_server, "H1", lot) for lot in ("P-A", "P-B", "A-1", "I-1", "G-1")}
    _, token, visit_id = visit_form(counter)
    r = submit(counter, token, visit_id, **four_lines(**bad))
    assert r.status_code == 422
    assert field_error(r.text, field) == message
    assert "Nothing was recorded" in r.text
    assert re.search(r'name="l4_item"[^>]*value="GLOVE"', r.text)  # typed input kept
    assert visit_entries(live_server, visit_id) == {}
    assert {lot: on_hand(live_server, "H1", lot) for lot in before} == before


def test_a_retry_and_a_double_submit_record_the_visit_once(live_server, counter):
    _, token, visit_id = visit_form(counter)
    first = submit(counter, token, visit_id, **four_lines())
    again = submit(counter, token, visit_id, **four_lines())
    assert first.status_code == again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert len(visit_entries(live_server, visit_id)) == 7
    assert on_hand(live_server, "H1", "P-B") == 155
    # Two submits of another visit at the same moment: one records, the other finds it recorded.
    _, token, other = visit_form(counter)
    answers: list[int] = []
    runs = [threading.Thread(target=lambda: answers.append(submit(counter, token, other, **four_lines(
        l1_quantity="10", l2_quantity="5", l3_quantity="1", l4_quantity="1")).status_code)) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(30)
    assert answers == [303, 303]
    assert len(visit_entries(live_server, other)) == 4
    assert on_hand(live_server, "H1", "G-1") == 89


def test_the_patients_last_90_days_are_shown_and_the_read_audited(live_server, counter):
    now = datetime.now(timezone.utc)
    with live_server.Session() as s:
        post(s, [entry("receipt", 50, facility="HC2", item="GLOVE", lot="G-9", expiry_date=soon(500)),
                 entry("dispense", 7, item="GLOVE", lot="G-1", entry_id="recent-h1", at=now - timedelta(days=10)),
                 entry("dispense", 4, facility="HC2", item="GLOVE", lot="G-9", entry_id="recent-hc2",
                       at=now - timedelta(days=3)),
                 entry("dispense", 9, item="GLOVE", lot="G-1", entry_id="old-h1", at=now - timedelta(days=120))])
        s.commit()
    _, token, _ = visit_form(counter)
    r = counter.post("/pharmacy/H1/visit/history", data={"health_card_id": CARD},
                     headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 200
    rows = re.findall(r'<tr data-entry="([^"]+)"', r.text)
    assert rows == ["recent-h1"]  # HC2 is outside a pharmacist of H1's scope; 120 days is too old
    [record] = history_reads(live_server)
    assert json.loads(record.detail) == {"rows": 1, "days": 90, "via": "visit"}
    assert record.object_id.startswith("P-") and CARD not in (record.detail or "")  # pseudonymous
    regional = live_server.login("manager_tripoli")
    token = csrf_of(regional.get("/pharmacy/H1/visit").text)
    r = regional.post("/pharmacy/H1/visit/history", data={"health_card_id": CARD},
                      headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert re.findall(r'<tr data-entry="([^"]+)"', r.text) == ["recent-hc2", "recent-h1"]
    assert "HC2" in r.text and ">7<" in r.text.replace(" ", "")
    # The page drawn again with the card (no scripts) shows the history too, and records the read.
    reads_before = len(history_reads(live_server))
    _, token, visit_id = visit_form(counter)
    page = submit(counter, token, visit_id, action="check", health_card_id=CARD, l1_item="GLOVE", l1_quantity="2")
    assert 'data-entry="recent-h1"' in page.text
    assert len(history_reads(live_server)) == reads_before + 1


def test_the_dispense_controls_apply_to_every_line(live_server, counter):
    with live_server.Session() as s:  # a second morphine lot, expiring first
        post(s, [entry("receipt", 40, item="MOR10", lot="M-2", expiry_date=soon(20))])
        s.commit()
    _, token, visit_id = visit_form(counter)
    # 70 morphine tablets from two lots (40 + 30): each entry is under the ceiling of 60, the line is not;
    # and RX1 (20 left) is proposed, so the line is beyond the prescription too.
    fields = four_lines(l2_item="MOR10", l2_quantity="70")
    r = submit(counter, token, visit_id, **fields)
    assert r.status_code == 200 and 'id="warnings"' in r.text
    line2 = re.search(r'<fieldset class="visit-line" id="line-2">.*?</fieldset>', r.text, re.S).group(0)
    assert 'data-warning="over_ceiling"' in line2 and 'data-warning="beyond_prescription"' in line2
    assert 'name="l2_reason"' in line2 and 'name="l1_reason"' not in r.text
    assert visit_entries(live_server, visit_id) == {}
    r = submit(counter, token, visit_id, confirm="1", **fields)
    assert r.status_code == 422 and field_error(r.text, "l2_reason") == "State a reason to go ahead."
    reason = "post-operative pain; the surgeon's order follows"
    r = submit(counter, token, visit_id, confirm="1", l2_reason=reason, **fields)
    assert r.status_code == 303, r.text[:2000]
    got = visit_entries(live_server, visit_id)
    assert got[f"{visit_id}-2-1"] == ("M-2", 40, reason) and got[f"{visit_id}-2-2"] == ("L1", 30, reason)
    assert got[f"{visit_id}-1-1"][2] is None  # lines without a warning carry no reason
    with live_server.Session() as s:
        assert s.scalar(select(LedgerEntry.prescription_ref).where(LedgerEntry.entry_id == f"{visit_id}-2-1")) == "RX1"


def test_a_controlled_item_without_a_prescription_on_record_needs_a_paper_number(live_server, counter):
    _, token, visit_id = visit_form(counter)
    fields = four_lines(l1_item="MOR10", l1_quantity="2", l1_prescription="", l1_rx_for=f"{CARD}|MOR10")
    r = submit(counter, token, visit_id, **fields)
    assert r.status_code == 200 and 'data-warning="no_prescription"' in r.text
    r = submit(counter, token, visit_id, **{**fields, "l1_paper": "PAPER-2026-118"})
    assert r.status_code == 303
    with live_server.Session() as s:
        assert s.scalar(select(LedgerEntry.prescription_ref)
                        .where(LedgerEntry.entry_id == f"{visit_id}-1-1")) == "PAPER-2026-118"


def test_a_scan_fills_its_line_without_scripts_and_the_serial_is_recorded(live_server, counter):
    with_gtins(live_server)
    _, token, visit_id = visit_form(counter)
    r = submit(counter, token, visit_id, health_card_id=CARD, l1_item="GLOVE", l1_quantity="1", l2_scan=PACK)
    assert r.status_code == 200, re.findall(r'field-error" role="alert">([^<]*)<', r.text)
    assert re.search(r'name="l2_item"[^>]*value="MOR10"', r.text)
    assert re.search(r'name="l2_serial" value="PK0001"', r.text) and re.search(r'name="l2_scan_lot" value="L1"', r.text)
    assert visit_entries(live_server, visit_id) == {}
    r = submit(counter, token, visit_id, health_card_id=CARD, l1_item="GLOVE", l1_quantity="1", l2_item="MOR10",
               l2_quantity="1", l2_serial="PK0001", l2_scan_gtin="05012345678900", l2_scan_lot="L1")
    assert r.status_code == 303, r.text[:2000]
    with live_server.Session() as s:
        assert s.scalar(select(LedgerEntry.serial_number).where(LedgerEntry.entry_id == f"{visit_id}-2-1")) == "PK0001"


def test_adding_a_line_keeps_what_was_typed(live_server, counter):
    _, token, visit_id = visit_form(counter)
    r = submit(counter, token, visit_id, action="add", lines="4", **four_lines())
    assert r.status_code == 200 and 'name="l5_item"' in r.text
    assert re.search(r'name="l3_item"[^>]*value="INSG"', r.text)
    assert visit_entries(live_server, visit_id) == {}


def test_a_patient_not_in_the_register_is_warned_once_and_one_reason_covers_the_visit(live_server, counter):
    _, token, visit_id = visit_form(counter)
    fields = {"health_card_id": "LY0000009999", "l1_item": "GLOVE", "l1_quantity": "2",
              "l2_item": "PCM500", "l2_quantity": "8"}
    r = submit(counter, token, visit_id, **fields)
    assert r.status_code == 200 and r.text.count('data-warning="unregistered_patient"') == 1
    assert 'name="reason"' in r.text and 'name="l1_reason"' not in r.text
    assert visit_entries(live_server, visit_id) == {}
    r = submit(counter, token, visit_id, confirm="1", **fields)
    assert r.status_code == 422 and field_error(r.text, "reason") == "State a reason to go ahead."
    r = submit(counter, token, visit_id, confirm="1", reason="visitor from Misrata, card not yet registered", **fields)
    assert r.status_code == 303
    got = visit_entries(live_server, visit_id)
    assert {v[2] for v in got.values()} == {"visitor from Misrata, card not yet registered"}
    assert {k: v[:2] for k, v in got.items()} == {f"{visit_id}-1-1": ("G-1", 2), f"{visit_id}-2-1": ("P-A", 5),
                                                  f"{visit_id}-2-2": ("P-B", 3)}
