"""Spreadsheets: workbooks read back with openpyxl equal the queries; the flags CSV is the contract's."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from anomaly import scan
from anomaly.export import query, to_csv
from stock.db import session_factory
from stock.errors import DawaError
from stock.ledger import post
from stock.queries import on_hand, stock_card
from stock.settings import get_settings
from tests.stock.builders import T0, build_world, entry
from tests.web.interop_helpers import import_small
from web.interop.spreadsheets import export


def read_xlsx(body: bytes) -> tuple[str, list[str], list[tuple]]:
    wb = load_workbook(io.BytesIO(body))
    assert len(wb.worksheets) == 1
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    return ws.title, list(rows[0]), rows[1:]


def test_on_hand_workbook_equals_the_query(session):
    import_small(session)
    body, count = export(session, "on-hand", "xlsx", settings=get_settings())
    title, header, rows = read_xlsx(body)
    expected = on_hand(session)
    assert title == "Stock on hand" and count == len(expected) > 100
    assert header == ["facility_code", "item_code", "item_name", "unit", "lot_number", "expiry_date", "on_hand"]
    got = [(f, i, n, u, lot or "", exp.date() if exp else None, Decimal(str(q)))
           for f, i, n, u, lot, exp, q in rows]
    assert got == [(r.facility_code, r.item_code, r.item_name, r.unit, r.lot_number, r.expiry_date, r.on_hand)
                   for r in expected]
    assert all(isinstance(r[6], (int, float)) for r in rows)  # numbers, not text

    one = export(session, "on-hand", "csv", settings=get_settings(), facility_code="TRP-H01")[0].decode()
    lines = list(csv.DictReader(io.StringIO(one)))
    assert [(r["item_code"], r["lot_number"], Decimal(r["on_hand"])) for r in lines] == \
        [(r.item_code, r.lot_number, r.on_hand) for r in on_hand(session, facility_code="TRP-H01")]


def test_flags_csv_is_the_contract_export_and_the_workbook_matches(session, patient_key):
    from stock.pseudonyms import pseudonymise_flag

    import_small(session)
    scan.run(session)
    session.commit()
    rows = [pseudonymise_flag(r, patient_key) for r in query(session)]  # the contract's rows, patients by pseudonym
    assert rows and any(r.subject == "patient" for r in rows)
    body, count = export(session, "flags", "csv", settings=get_settings())
    assert body.decode("utf-8") == to_csv(rows) and count == len(rows)
    cards = {r.subject_id for r in query(session) if r.subject == "patient"}
    assert not [c for c in cards if c in body.decode("utf-8")]
    high = export(session, "flags", "csv", settings=get_settings(), severity="high")[0].decode()
    assert high == to_csv([pseudonymise_flag(r, patient_key) for r in query(session, severity="high")])

    title, header, cells = read_xlsx(export(session, "flags", "xlsx", settings=get_settings())[0])
    assert title == "Flags"
    assert header[:9] == ["flag_id", "detector", "score", "severity", "facility_code", "subject", "subject_id",
                          "entry_ids", "reason"]
    assert header[9] == "created_at (UTC)"
    assert [c[0] for c in cells] == [r.flag_id for r in rows]
    assert [c[2] for c in cells] == [r.score for r in rows]
    assert all(isinstance(c[9], datetime) for c in cells)


@pytest.fixture
def patient_key(monkeypatch):
    """An install's patient key, as `dawa init` writes it: stock cards name patients by pseudonym."""
    monkeypatch.setenv("DAWA_PATIENT_ID_KEY", "test-patient-key")
    get_settings.cache_clear()
    yield "test-patient-key"
    get_settings.cache_clear()


def test_stock_card_has_typed_cells_in_the_facility_zone(session, patient_key):
    build_world(session)
    post(session, [entry("receipt", 100, entry_id="r1"),
                   entry("dispense", 30, entry_id="d1", at=T0 + timedelta(hours=2)),
                   entry("loss", 5, entry_id="l1", at=T0 + timedelta(days=1))])
    session.commit()
    since = T0 + timedelta(hours=1)
    title, header, rows = read_xlsx(export(session, "stock-card", "xlsx", settings=get_settings(), facility_code="H1",
                                           item_code="MOR10", since=since)[0])
    card = stock_card(session, "H1", "MOR10", since=since)
    assert title == "Stock card H1 MOR10"
    assert header[0] == "occurred_at (Africa/Tripoli)"
    opening, *lines = rows
    assert opening[2] == "opening" and opening[6] == card.opening == 100
    zone = ZoneInfo("Africa/Tripoli")
    assert [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in lines] == [
        (line.occurred_at.astimezone(zone).replace(tzinfo=None), line.entry_id, line.kind, line.quantity,
         line.effect, line.balance) for line in card.lines]
    assert lines[0][0] == datetime(2026, 3, 1, 11, 0)  # 09:00 UTC+2 plus two hours, local
    text = export(session, "stock-card", "csv", settings=get_settings(), facility_code="H1",
                  item_code="MOR10")[0].decode()
    assert "2026-03-01T09:00:00+02:00,r1,receipt,L1,100,100,100" in text
    from stock.pseudonyms import pseudonym

    assert "LY0000000001" not in text and pseudonym("LY0000000001", patient_key) in text
    with pytest.raises(DawaError, match="facility and an item"):
        export(session, "stock-card", "csv", settings=get_settings(), facility_code="H1")
    with pytest.raises(DawaError, match="xlsx or csv"):
        export(session, "on-hand", "pdf", settings=get_settings())


def test_cli_export_writes_each_kind(sqlite_engine, tmp_path, monkeypatch, patient_key):
    with session_factory(sqlite_engine)() as s:
        build_world(s)
        post(s, [entry("receipt", 100, entry_id="r1"), entry("dispense", 30, entry_id="d1")])
        s.commit()
    from web.cli import common as cli
    from web.cli.main import app

    for console in (cli.console, cli.err):  # no line wrapping in what is checked below
        monkeypatch.setattr(console, "width", 400)

    url = sqlite_engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    for kind, extra in (("on-hand", []), ("stock-card", ["--facility", "H1", "--item", "MOR10"]), ("flags", [])):
        for fmt in ("xlsx", "csv"):
            out = tmp_path / f"{kind}.{fmt}"
            res = runner.invoke(app, ["export", kind, "--out", str(out), *extra, "--db", url],
                                catch_exceptions=False)
            assert res.exit_code == 0, res.output
            assert out.stat().st_size > 0
    title, _h, rows = read_xlsx((tmp_path / "on-hand.xlsx").read_bytes())
    assert rows == [("H1", "MOR10", "Morphine 10 mg tablet", "tablet", "L1", datetime(2028, 1, 31), 70)]
    res = runner.invoke(app, ["export", "stock-card", "--out", str(tmp_path / "x.csv"), "--db", url])
    assert res.exit_code == 2 and "needs --facility and --item" in res.output + res.stderr
    res = runner.invoke(app, ["export", "on-hand", "--out", str(tmp_path / "x.pdf"), "--db", url])
    assert res.exit_code == 2
