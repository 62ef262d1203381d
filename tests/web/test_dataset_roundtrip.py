"""`dawa export dataset` then `dawa import` into an empty database gives the same ledger: the same
entries, lots, balances, patients and, per facility, the same hash chain heads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook
from sqlalchemy import text
from typer.testing import CliRunner

from stock import balances, chain
from stock.db import make_engine, session_factory
from stock.importer import import_dataset
from stock.ledger import post
from tests.stock.builders import entry
from tests.stock.test_importer import LEDGER_ROWS, serial_dataset, write_dataset
from tests.web.interop_helpers import SMALL, other_engine  # noqa: F401 - fixture
from web.interop import dataset

STOCK_REPORTS = """facility_code,item_code,period,opening,received,consumed,adjustment,closing,stockout_days,ordered
H1,MOR10,2026-02,0,300,120,-5,175,,400
H1,INSG,2026-02,10.5,100.5,7.5,,103.5,0,
"""


def ledger(session) -> list[tuple]:
    return session.execute(text(
        "SELECT e.entry_id, f.code, e.chain_seq, e.chain_hash, e.kind, i.code, l.lot_number, l.expiry_date, "
        "e.quantity, e.effect, e.book_quantity, e.occurred_at, e.recorded_at, e.recorded_by, p.health_card_id, "
        "p.registered, e.prescription_ref, e.counterparty, cf.code, e.reason, e.document_number, e.reverses, "
        "e.serial_number "
        "FROM ledger_entry e JOIN facility f ON f.id = e.facility_id JOIN item i ON i.id = e.item_id "
        "JOIN lot l ON l.id = e.lot_id LEFT JOIN patient p ON p.id = e.patient_id "
        "LEFT JOIN facility cf ON cf.id = e.counterparty_facility_id ORDER BY e.entry_id")).all()


def master(session) -> dict:
    q = lambda sql: session.execute(text(sql)).all()  # noqa: E731
    return {
        "facilities": q("SELECT f.code, f.name, f.region, f.kind, p.code FROM facility f "
                        "LEFT JOIN facility p ON p.id = f.parent_id ORDER BY f.code"),
        "items": q("SELECT code, name, atc_code, form, unit, controlled, max_dispense_quantity, gtin FROM item "
                   "ORDER BY code"),
        "patients": q("SELECT p.health_card_id, p.birth_year, p.sex, f.code, p.deceased_on, p.registered "
                      "FROM patient p LEFT JOIN facility f ON f.id = p.home_facility_id ORDER BY 1"),
        "prescriptions": q("SELECT r.code, p.health_card_id, f.code, r.prescriber, i.code, r.quantity, r.days_supply, "
                           "r.issued_on, r.diagnosis_code FROM prescription r JOIN patient p ON p.id = r.patient_id "
                           "JOIN facility f ON f.id = r.facility_id JOIN item i ON i.id = r.item_id ORDER BY 1"),
        "balances": q("SELECT f.code, i.code, l.lot_number, b.on_hand FROM balance b "
                      "JOIN facility f ON f.id = b.facility_id JOIN lot l ON l.id = b.lot_id "
                      "JOIN item i ON i.id = b.item_id ORDER BY 1, 2, 3"),
    }


def current_reports(session) -> list[tuple]:
    return session.execute(text(
        "SELECT f.code, i.code, r.period, r.opening, r.received, r.consumed, r.adjustment, r.closing, "
        "r.stockout_days, r.ordered FROM stock_report r JOIN facility f ON f.id = r.facility_id "
        "JOIN item i ON i.id = r.item_id WHERE r.revision = (SELECT max(revision) FROM stock_report x "
        "WHERE x.facility_id = r.facility_id AND x.item_id = r.item_id AND x.period = r.period) "
        "ORDER BY 1, 2, 3")).all()


def round_trip(engine, other_engine, out, fmt: str) -> tuple[dataset.DatasetExport, dict, dict]:
    """Export ``engine``'s data set to ``out`` and import it into the empty ``other_engine``; what
    each database holds, side by side."""
    with session_factory(engine, read_only=True)() as s:
        result = dataset.write(s, out, fmt, key=None, default_zone="Africa/Tripoli", clear_cards=True)
        before = {"ledger": ledger(s), "heads": chain.heads(s), "reports": current_reports(s), **master(s)}
    with session_factory(other_engine)() as s:
        report = import_dataset(s, out)
        s.commit()
        assert report.entries_added == len(before["ledger"])
        assert chain.verify(s).ok and balances.drift(s) == []
        after = {"ledger": ledger(s), "heads": chain.heads(s), "reports": current_reports(s), **master(s)}
        again = import_dataset(s, out)   # and it is idempotent
        s.commit()
        assert again.entries_added == 0 and again.entries_already_present == len(before["ledger"])
    return result, before, after


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_small_sample_round_trip(engine, other_engine, tmp_path, fmt):
    with session_factory(engine)() as s:
        import_dataset(s, SMALL)
        s.commit()
    out = tmp_path / ("small.xlsx" if fmt == "xlsx" else "small")
    result, before, after = round_trip(engine, other_engine, out, fmt)
    assert result.out_of_order == {} and result.rows["ledger.csv"] == len(before["ledger"]) > 6000
    assert after == before
    assert len(before["heads"]) == 9 and all(h["length"] > 0 for h in before["heads"])
    if fmt == "xlsx":
        wb = load_workbook(out, read_only=True)
        assert wb.sheetnames == ["facilities", "items", "patients", "prescriptions", "ledger", "stock_reports"]
        wb.close()
    else:
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["facilities.csv", "items.csv", "patients.csv", "prescriptions.csv", "ledger.csv", "stock_reports.csv"])


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_round_trip_of_every_kind_reports_revisions_and_formula_like_text(engine, other_engine, tmp_path, fmt):
    """Every entry kind, a correction naming what it reverses, decimals, an unregistered patient,
    stock reports at their current revision, and text that Excel would take for a formula."""
    rows = [r.replace(",damaged,", ",=SUM(A1:A9),") for r in LEDGER_ROWS]
    with session_factory(engine)() as s:
        import_dataset(s, write_dataset(tmp_path / "ds", ledger_rows=rows, **{"stock_reports.csv": STOCK_REPORTS}))
        s.commit()
        import_dataset(s, write_dataset(tmp_path / "ds2", ledger_rows=rows, **{"stock_reports.csv": STOCK_REPORTS.replace(",175,", ",170,")}))
        s.commit()
    out = tmp_path / ("all.xlsx" if fmt == "xlsx" else "all")
    result, before, after = round_trip(engine, other_engine, out, fmt)
    assert after == before and result.out_of_order == {}
    assert ("=SUM(A1:A9)",) in {(r[19],) for r in after["ledger"]}
    assert {r[0]: r[15] for r in after["ledger"]}["D3"] in (False, 0)   # LY9999999999 stays unregistered
    assert [r[7] for r in after["reports"] if r[1] == "MOR10"] == [170_000]  # the resubmitted closing, in thousandths


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_round_trip_keeps_gtins_and_pack_serials(engine, other_engine, tmp_path, fmt):
    with session_factory(engine)() as s:
        import_dataset(s, serial_dataset(tmp_path / "ds"))
        s.commit()
    out = tmp_path / ("serials.xlsx" if fmt == "xlsx" else "serials")
    _result, before, after = round_trip(engine, other_engine, out, fmt)
    assert after == before
    assert {r[0]: r[22] for r in after["ledger"]} == {"R1": None, "R2": None, "R3": None,
                                                        "S1": "SN-1", "S2": None, "S3": "SN-1"}
    assert {r[0]: r[7] for r in after["items"]} == {"GLOVE": None, "INSG": "09501101530003",
                                                     "MOR10": "05012345678900"}


def test_entries_recorded_out_of_occurred_at_order_are_named(engine, tmp_path):
    """A back-dated entry recorded after a later-dated one cannot be replayed in chain order: the
    export says which facility's chain a re-import will not reproduce."""
    with session_factory(engine)() as s:
        import_dataset(s, write_dataset(tmp_path / "ds"))
        s.commit()
        post(s, entry("dispense", 1, facility="H1", item="MOR10", lot="L1",
                      at=datetime(2026, 3, 6, 9, tzinfo=timezone.utc), entry_id="LATE"))
        s.commit()
    with session_factory(engine, read_only=True)() as s:
        result = dataset.write(s, tmp_path / "out", "csv", key=None, default_zone="Africa/Tripoli", clear_cards=True)
    assert result.out_of_order == {"H1": 1}


# ------------------------------------------------------------------ the command line (SQLite files)

def run(*args):
    from web.cli.main import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    result.err = " ".join(result.stderr.split())
    return result


@pytest.fixture
def two_databases(tmp_path, monkeypatch):
    from stock.settings import get_settings

    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    urls = [f"sqlite:///{tmp_path / name}" for name in ("a.sqlite", "b.sqlite")]
    for url in urls:
        assert run("init", "--db", url, "--env-file", ".env").exit_code == 0
    yield urls
    get_settings.cache_clear()


def heads_of(url: str) -> list[dict]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return chain.heads(s)
    finally:
        engine.dispose()


def add_user(url: str, name: str, role: str, **where) -> None:
    from tests.web.conftest import PASSWORD, make_settings
    from web.admin.service import create_user

    engine = make_engine(url)
    with session_factory(engine)() as s:
        create_user(s, name, role, PASSWORD, web=make_settings().web, **where)
        s.commit()
    engine.dispose()


def clear_exports(url: str) -> list[tuple]:
    from sqlalchemy import select

    from stock.models import User
    from web.models import AuditRecord

    engine = make_engine(url)
    with session_factory(engine)() as s:
        rows = s.execute(select(User.username, AuditRecord.object_id, AuditRecord.detail)
                         .join(User, User.id == AuditRecord.user_id)
                         .where(AuditRecord.action == "clear_cards_exported")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("out", ["book.xlsx", "folder"])
def test_cli_export_dataset_then_import_gives_the_same_chain_heads(two_databases, tmp_path, out):
    """The cards in clear, asked for by a national admin and recorded: the copy imports back whole."""
    a, b = two_databases
    assert run("import", str(write_dataset(tmp_path / "ds")), "--db", a, "-q").exit_code == 0
    add_user(a, "chief", "admin")
    exported = run("export", "dataset", "--out", str(tmp_path / out), "--db", a, "--clear-cards", "--by", "chief")
    assert exported.exit_code == 0, exported.output
    assert "16 ledger" in " ".join(exported.output.split()) and "health cards in clear" in exported.output
    assert [(who, what) for who, what, _ in clear_exports(a)] == [("chief", "dataset")]
    imported = run("import", str(tmp_path / out), "--db", b, "-q")
    assert imported.exit_code == 0, imported.output
    assert heads_of(b) == heads_of(a)
    assert run("ledger", "head", "--db", b).output == run("ledger", "head", "--db", a).output


def test_cli_export_dataset_names_patients_by_pseudonym_unless_a_national_reviewer_asks(two_databases, tmp_path):
    import csv

    from stock.pseudonyms import patient_key, pseudonym
    from stock.settings import get_settings

    a, b = two_databases
    assert run("import", str(write_dataset(tmp_path / "ds")), "--db", a, "-q").exit_code == 0
    exported = run("export", "dataset", "--out", str(tmp_path / "plain"), "--db", a)
    assert exported.exit_code == 0 and "patients named by pseudonym" in exported.output, exported.output
    key = patient_key(get_settings())  # the key `dawa init` wrote to .env
    written = {name: (tmp_path / "plain" / name).read_text(encoding="utf-8")
               for name in ("patients.csv", "prescriptions.csv", "ledger.csv")}
    assert not [n for n, text in written.items() if "LY0000000001" in text]
    cards = [r["health_card_id"] for r in csv.DictReader((tmp_path / "plain" / "ledger.csv").open()) if r["health_card_id"]]
    assert cards and pseudonym("LY0000000001", key) in cards
    # The pseudonymous copy still imports: the same patients, linked the same way, without a card.
    assert run("import", str(tmp_path / "plain"), "--db", b, "-q").exit_code == 0
    add_user(a, "pharm", "pharmacist", facility="H1")
    add_user(a, "aud_tripoli", "auditor", region="Tripoli")
    for args, why in ((["--clear-cards"], "needs --by"), (["--clear-cards", "--by", "nobody"], "no such active user"),
                      (["--clear-cards", "--by", "pharm"], "facility pharmacist"),
                      (["--clear-cards", "--by", "aud_tripoli"], "region auditor"), (["--by", "pharm"], "--by goes")):
        refused = run("export", "dataset", "--out", str(tmp_path / "refused"), "--db", a, *args)
        assert refused.exit_code == 2 and why in refused.err, (args, refused.err)
    assert not (tmp_path / "refused").exists() and clear_exports(a) == []


def test_cli_import_of_a_bad_workbook_names_sheet_row_and_column_and_stores_nothing(two_databases, tmp_path):
    from tests.stock.test_workbook_import import book

    _a, b = two_databases
    path = book(tmp_path, ledger_rows=LEDGER_ROWS[:3] + [
        "Z,2026-03-09T10:00:00Z,WH-C,dispense,MOR10,L1,,1001,LY0000000001,,,,u,,"])
    result = run("import", str(path), "--db", b, "-q")
    assert result.exit_code == 1
    assert "book.xlsx[ledger]:5: quantity: insufficient stock of MOR10 lot L1 at WH-C" in result.err
    assert "nothing was imported" in result.err
    assert heads_of(b) == []


def test_cli_export_dataset_refuses_filters_and_a_wrong_target(two_databases, tmp_path):
    a, _b = two_databases
    refused = run("export", "dataset", "--out", str(tmp_path / "x.xlsx"), "--facility", "H1", "--db", a)
    assert refused.exit_code == 2 and "--facility does not apply" in refused.err
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    assert run("export", "dataset", "--out", str(tmp_path / "file.txt"), "--db", a).exit_code == 2
    assert run("export", "dataset", "--out", str(tmp_path / "d"), "--format", "xlsx", "--db", a).exit_code == 2
    assert not (tmp_path / "x.xlsx").exists()


def test_recorded_at_in_the_future_refused(engine, tmp_path):
    later = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    header = ("entry_id,occurred_at,facility_code,kind,item_code,lot_number,expiry_date,quantity,health_card_id,"
              "prescription_id,counterparty_code,reason,recorded_by,document_number,reverses,recorded_at")
    from stock.importer import ImportFailed

    folder = write_dataset(tmp_path / "ds", ledger_rows=[])
    (folder / "ledger.csv").write_text(
        header + "\nR1,2026-03-01T08:00:00+02:00,WH-C,receipt,MOR10,L1,2028-01-31,10,,,S,,u,,,"
        + later + "\n", encoding="utf-8")
    with session_factory(engine)() as s:
        with pytest.raises(ImportFailed) as err:
            import_dataset(s, folder)
        s.rollback()
    assert any(str(p).startswith("ledger.csv:2: recorded_at:") and "after the time of this import" in str(p)
               for p in err.value.problems)
