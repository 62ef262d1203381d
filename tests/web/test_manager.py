"""The managers' pages, served for real: the stock dashboard and stock card of a facility show
what stock.queries computes, bucket stockouts, low stock and expiring lots as the alerts do,
download the same rows as CSV, and keep each manager to their own facilities."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from stock.ledger import post
from stock.queries import expiring, monthly_dispensed, stock_card, stock_positions
from stock.settings import Settings
from tests.stock.builders import entry
from tests.web.conftest import CHEAP_HASHING

ZONE = ZoneInfo("Africa/Tripoli")  # the settings' default zone; the test facilities name none
MIN_MONTHS = 2


@pytest.fixture
def web_settings() -> Settings:
    return Settings(_env_file=None, secret_key="test-secret-key-" + "x" * 32, web=CHEAP_HASHING,
                    alerts={"low_stock_months": MIN_MONTHS})


def facility_today() -> date:
    return datetime.now(ZONE).date()


@pytest.fixture
def managed(live_server):
    """H1 with a stockout (GLOVE), an item below the minimum (INSG: 170 on hand, 100 used last
    month, so 1.7 months of stock) whose lots expire within 30, 60 and 90 days and beyond."""
    today = facility_today()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    t_in = datetime.combine(last_month, time(10), tzinfo=timezone.utc)
    t_out = t_in + timedelta(days=1)
    with live_server.Session() as s:
        post(s, [
            entry("receipt", 10, item="GLOVE", lot="", expiry_date=None, at=t_in),
            entry("dispense", 10, item="GLOVE", lot="", at=t_out, entry_id="G-OUT"),
            entry("receipt", 40, item="INSG", lot="I-SOON", expiry_date=today + timedelta(days=20), at=t_in),
            entry("receipt", 40, item="INSG", lot="I-MID", expiry_date=today + timedelta(days=45), at=t_in),
            entry("receipt", 40, item="INSG", lot="I-LATE", expiry_date=today + timedelta(days=80), at=t_in),
            entry("receipt", 350, item="INSG", lot="I-FAR", expiry_date=today + timedelta(days=400), at=t_in),
            entry("dispense", 300, item="INSG", lot="I-FAR", at=t_out, entry_id="I-USE"),
        ])
        s.commit()
    return today


ROW = re.compile(r'<tr data-item="([^"]*)" data-on-hand="([^"]*)" data-amc="([^"]*)"\s+data-months="([^"]*)"')


def table(html: str, table_id: str) -> list[tuple]:
    """The rows (item, on hand, amc, months) of a positions table on the page."""
    m = re.search(rf'<table class="compact" id="{table_id}">(.*?)</table>', html, re.S)
    if not m:
        return []
    return [(i, Decimal(o), Decimal(a), Decimal(mo) if mo else None) for i, o, a, mo in ROW.findall(m.group(1))]


def csv_rows(body: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body)))


def test_dashboard_equals_the_queries(live_server, managed):
    c = live_server.login("manager_h1")
    r = c.get("/stock/H1")
    assert r.status_code == 200, r.text[:500]
    with live_server.Session() as s:
        want = [(p.item_code, p.on_hand, p.amc, p.months_of_stock)
                for p in stock_positions(s, today=managed, facility_code="H1")]
    assert table(r.text, "positions") == want
    assert ("INSG", Decimal(170), Decimal(100), Decimal("1.7")) in want


def test_buckets_on_a_hand_built_case(live_server, managed):
    c = live_server.login("manager_h1")
    html = c.get("/stock/H1").text
    assert [row[0] for row in table(html, "stockouts")] == ["GLOVE"]
    assert [row[0] for row in table(html, "below-minimum")] == ["INSG"]
    lots = re.findall(r'<tr data-item="([^"]*)" data-lot="([^"]*)" data-window="([^"]*)"', html)
    assert sorted(lots) == [("INSG", "I-LATE", "90"), ("INSG", "I-MID", "60"), ("INSG", "I-SOON", "30")]
    with live_server.Session() as s:
        assert {r.lot_number for r in expiring(s, within_days=90, today=managed, facility_code="H1")} == \
            {"I-SOON", "I-MID", "I-LATE"}


def test_csv_equals_the_screen(live_server, managed):
    c = live_server.login("manager_h1")
    html = c.get("/stock/H1").text
    for table_id in ("positions", "below-minimum", "stockouts"):
        r = c.get(f"/stock/H1/export/{table_id}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        got = [(row["item_code"], Decimal(row["on_hand"]), Decimal(row["amc"]),
                Decimal(row["months_of_stock"]) if row["months_of_stock"] else None) for row in csv_rows(r.text)]
        assert got == table(html, table_id), table_id
    on_screen = re.findall(r'data-lot="([^"]*)" data-window="([^"]*)"\s+data-on-hand="([^"]*)"', html)
    exp = csv_rows(c.get("/stock/H1/export/expiring").text)
    assert [(row["lot_number"], row["window_days"], row["on_hand"]) for row in exp] == on_screen
    # The lots of an item, shown on demand, and their download.
    piece = c.get("/stock/H1/lots", params={"item": "INSG"}, headers={"HX-Request": "true"})
    assert piece.status_code == 200 and "<html" not in piece.text
    shown = re.findall(r'<tr data-lot="([^"]*)" data-on-hand="([^"]*)"', piece.text)
    assert sorted(shown) == [("I-FAR", "50"), ("I-LATE", "40"), ("I-MID", "40"), ("I-SOON", "40")]
    down = csv_rows(c.get("/stock/H1/export/lots", params={"item": "INSG"}).text)
    assert sorted((row["lot_number"], row["on_hand"]) for row in down) == sorted(shown)
    assert c.get("/stock/H1/export/nothing").status_code == 404


def test_chart_data_is_monthly_dispensing(live_server, managed):
    c = live_server.login("manager_h1")
    html = c.get("/stock/H1", params={"chart": "INSG"}).text
    m = re.search(r"id=\"use-chart\" class=\"dawa-chart\"[^>]*data-chart='([^']*)'", html)
    assert m, "no chart"
    import html as html_lib
    import json

    data = json.loads(html_lib.unescape(m.group(1)))
    with live_server.Session() as s:
        use = monthly_dispensed(s, "H1", today=managed, months=12, item_code="INSG")
    assert data["labels"] == [u.month.strftime("%Y-%m") for u in use]
    assert [Decimal(str(v)) for v in data["datasets"][0]["data"]] == [u.dispensed for u in use]
    assert Decimal(str(data["datasets"][0]["data"][-2])) == 300  # last month's 300


def test_stock_card_period_and_csv(live_server, managed):
    c = live_server.login("manager_h1")
    r = c.get("/stock/H1/card/INSG")
    assert r.status_code == 200
    screen = re.findall(r'<tr data-entry="([^"]*)" data-balance="([^"]*)"', r.text)
    with live_server.Session() as s:
        card = stock_card(s, "H1", "INSG")
    assert screen == [("", str(card.opening))] + [(l.entry_id, str(l.balance)) for l in card.lines]
    assert screen[-1] == ("I-USE", "170")
    down = csv_rows(c.get("/stock/H1/card/INSG/export").text)
    assert [(row["entry_id"], row["balance"]) for row in down] == screen

    # A period starting after the receipts: they make the opening balance.
    day = (managed.replace(day=1) - timedelta(days=1)).replace(day=1) + timedelta(days=1)
    r = c.get("/stock/H1/card/INSG", params={"since": day.isoformat(), "until": managed.isoformat()})
    screen = re.findall(r'<tr data-entry="([^"]*)" data-balance="([^"]*)"', r.text)
    assert screen == [("", "470"), ("I-USE", "170")]
    down = csv_rows(c.get("/stock/H1/card/INSG/export",
                          params={"since": day.isoformat(), "until": managed.isoformat()}).text)
    assert [(row["entry_id"], row["balance"]) for row in down] == screen

    bad = c.get("/stock/H1/card/INSG", params={"since": "yesterday"})
    assert bad.status_code == 422 and 'id="f-since-error"' in bad.text and 'value="yesterday"' in bad.text
    assert c.get("/stock/H1/card/INSG/export", params={"since": "yesterday"}).status_code == 422
    assert c.get("/stock/H1/card/NOPE").status_code == 404


def test_another_facility_is_refused(live_server, managed):
    c = live_server.login("manager_h1")
    for path, params in (("/stock/HC2", {}), ("/stock/HC2/lots", {"item": "MOR10"}),
                         ("/stock/HC2/export/positions", {}), ("/stock/HC2/export/lots", {}),
                         ("/stock/HC2/card/MOR10", {}), ("/stock/HC2/card/MOR10/export", {}),
                         ("/stock", {"facility": "HC2"})):
        r = c.get(path, params=params)
        assert r.status_code == 403, (path, r.status_code)
        assert "data-item" not in r.text and "data-entry" not in r.text and "item_code" not in r.text
    # A manager of one facility goes straight to it; the alerts' links open the stock card.
    assert c.get("/stock").headers["location"] == "/stock/H1"
    assert c.get("/stock", params={"facility": "H1", "item": "INSG"}).headers["location"] == "/stock/H1/card/INSG"
    # A regional manager picks among the region's facilities, and no other.
    region = live_server.login("manager_tripoli")
    assert region.get("/stock").headers["location"] == "/stock/choose"
    pick = region.get("/stock/choose").text
    assert 'href="/stock/HC2"' in pick and 'href="/stock/B1"' not in pick
    assert region.get("/stock/HC2").status_code == 200
    assert region.get("/stock/B1").status_code == 403
    assert region.get("/stock/B1/export/stockouts").status_code == 403
    # Pharmacists and auditors do not use these pages.
    assert live_server.login("pharm_h1").get("/stock/H1").status_code == 403
    assert live_server.login("auditor_tripoli").get("/stock/H1").status_code == 403
