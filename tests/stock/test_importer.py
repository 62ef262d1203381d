"""`dawa import`: the contract's files, every refusal named by file, line and column, all or nothing."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from sample_data import SMALL
from stock import balances, chain
from stock.db import session_factory
from stock.importer import ImportFailed, import_dataset
from stock.ledger import post
from stock.models import LedgerEntry, Patient
from stock.queries import on_hand
from tests.stock.builders import entry

FACILITIES = """code,name,region,kind,parent_code
WH-C,Central Medical Store,Tripoli,warehouse,
H1,Tripoli Central Hospital,Tripoli,hospital,WH-C
HC2,Souq Al Juma Health Centre,Tripoli,health_center,WH-C
"""
ITEMS = """code,name,atc_code,form,unit,controlled,max_dispense_quantity
MOR10,Morphine 10 mg tablet,N02AA01,tablet,tablet,true,60
INSG,Insulin glargine 100 IU/ml,A10AE04,injection,ml,false,
GLOVE,Surgical gloves,,,piece,false,
"""
PATIENTS = """health_card_id,birth_year,sex,home_facility_code,deceased_on
LY0000000001,1970,F,H1,
LY0000000002,1950,M,H1,2026-02-01
"""
PRESCRIPTIONS = """prescription_id,health_card_id,facility_code,prescriber,item_code,quantity,days_supply,issued_on,diagnosis_code
RX1,LY0000000001,H1,dr-7,MOR10,30,30,2026-03-01,C50.9
"""
HEADER = ("entry_id,occurred_at,facility_code,kind,item_code,lot_number,expiry_date,quantity,"
          "health_card_id,prescription_id,counterparty_code,reason,recorded_by,document_number,reverses")
LEDGER_ROWS = [
    "R1,2026-03-01T08:00:00+02:00,WH-C,receipt,MOR10,L1,2028-01-31,1000,,,MEDIPHARM,,u-wh,GRN-1,",
    "R2,2026-03-01T08:05:00+02:00,WH-C,receipt,INSG,I1,2027-06-30,500.5,,,MEDIPHARM,,u-wh,GRN-1,",
    "R3,2026-03-01T08:06:00+02:00,WH-C,receipt,GLOVE,,,200,,,MEDIPHARM,,u-wh,GRN-2,",
    "T1,2026-03-02T10:00:00+02:00,WH-C,transfer_out,MOR10,L1,,300,,,H1,,u-wh,WB-1,",
    "T2,2026-03-04T09:00:00+02:00,H1,transfer_in,MOR10,L1,2028-01-31,300,,,WH-C,,u-h1,WB-1,",
    "T3,2026-03-02T10:00:00+02:00,WH-C,transfer_out,INSG,I1,,100.5,,,H1,,u-wh,WB-2,",
    "T4,2026-03-03T09:00:00+02:00,H1,transfer_in,INSG,I1,,100.5,,,WH-C,,u-h1,WB-2,",
    "D1,2026-03-05T11:00:00+02:00,H1,dispense,MOR10,L1,,30,LY0000000001,RX1,,,u-h1,,",
    "D2,2026-03-05T23:40:00+02:00,H1,dispense,MOR10,L1,,90,LY0000000001,RX1,,,u-h1,,",
    "D3,2026-03-06T11:00:00+02:00,H1,dispense,MOR10,L1,,10,LY9999999999,,,,u-h1,,",
    "D4,2026-03-06T12:00:00+02:00,H1,dispense,MOR10,L1,,10,LY0000000002,,,,u-h1,,",
    "D5,2026-03-06T12:30:00+02:00,H1,dispense,INSG,I1,,7.5,LY0000000001,,,,u-h1,,",
    "X1,2026-03-07T12:00:00+02:00,H1,loss,MOR10,L1,,5,,,,damaged,u-h1,,",
    "A1,2026-03-07T12:10:00+02:00,H1,adjustment,MOR10,L1,,-2,,,,correction,u-h1,,",
    "V1,2026-03-07T13:00:00+02:00,H1,adjustment,MOR10,L1,,10,,,,correction,u-h1,,D4",
    "C1,2026-03-31T17:00:00+02:00,H1,count,MOR10,L1,,150,,,,,u-h1,,",
]


def write_dataset(folder: Path, ledger_rows=None, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"facilities.csv": FACILITIES, "items.csv": ITEMS, "patients.csv": PATIENTS,
             "prescriptions.csv": PRESCRIPTIONS,
             "ledger.csv": "\n".join([HEADER, *(LEDGER_ROWS if ledger_rows is None else ledger_rows)]) + "\n"}
    files.update(overrides)
    for name, body in files.items():
        if body is not None:
            (folder / name).write_text(body, encoding="utf-8")
    return folder


def lot_stock(session, facility, item, lot):
    return sum((r.on_hand for r in on_hand(session, facility_code=facility, item_code=item)
                if r.lot_number == lot), Decimal(0))


def count_entries(session) -> int:
    return session.scalar(select(func.count()).select_from(LedgerEntry))


def test_import_applies_every_kind(session, tmp_path):
    report = import_dataset(session, write_dataset(tmp_path / "ds"))
    session.commit()
    assert report.entries_added == len(LEDGER_ROWS) and report.facilities == 3 and report.items == 3
    assert report.unregistered_patients == 1
    assert lot_stock(session, "WH-C", "MOR10", "L1") == 700
    assert lot_stock(session, "WH-C", "INSG", "I1") == Decimal("400")
    assert lot_stock(session, "H1", "INSG", "I1") == Decimal("93")
    assert lot_stock(session, "H1", "MOR10", "L1") == 150
    count = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == "C1")).one()
    # 300 - 30 - 90 - 10 - 10 - 5 - 2 + 10 = 163 by the books, 150 counted
    assert count.book_quantity == 163 and count.effect == -13
    assert balances.drift(session) == []
    assert chain.verify(session).ok
    ghost = session.scalars(select(Patient).where(Patient.health_card_id == "LY9999999999")).one()
    assert not ghost.registered


def test_import_chain_equals_post_chain(engine, tmp_path):
    """The bulk path builds exactly the chain that post() builds for the same rows."""
    from stock.db import session_factory

    Session = session_factory(engine)
    with Session() as s:
        import_dataset(s, write_dataset(tmp_path / "ds", ledger_rows=LEDGER_ROWS[:3]))
        s.commit()
        post(s, entry("transfer_out", 10, facility="WH-C", lot="L1", counterparty_code="H1"))
        s.commit()
        assert chain.verify(s).ok
        assert chain.verify(s).entries == 4


def test_reimport_is_idempotent(session, tmp_path):
    ds = write_dataset(tmp_path / "ds")
    import_dataset(session, ds)
    session.commit()
    again = import_dataset(session, ds)
    session.commit()
    assert again.entries_added == 0 and again.entries_already_present == len(LEDGER_ROWS)
    assert count_entries(session) == len(LEDGER_ROWS)
    assert lot_stock(session, "H1", "MOR10", "L1") == 150


def test_duplicate_row_in_file_added_once(session, tmp_path):
    rows = LEDGER_ROWS[:1] + LEDGER_ROWS[:1]
    report = import_dataset(session, write_dataset(tmp_path / "ds", ledger_rows=rows))
    assert report.entries_added == 1


def problems_of(session, folder) -> list[str]:
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, folder)
    session.rollback()
    assert count_entries(session) == 0, "nothing may be stored on failure"
    return [str(p) for p in err.value.problems]


def bad_ledger(tmp_path, *rows) -> Path:
    return write_dataset(tmp_path / "bad", ledger_rows=LEDGER_ROWS[:3] + list(rows))


BAD_ROWS = [
    ("Z,2026-03-09T10:00:00+02:00,H1,dispense,MOR10,L1,,1,,,,,u-h1,,", "ledger.csv:5: health_card_id: a dispense needs"),
    ("Z,2026-03-09T10:00:00,WH-C,receipt,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: occurred_at: timestamp '2026-03-09T10:00:00' has no zone offset"),
    ("Z,yesterday+02:00,WH-C,receipt,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: occurred_at:"),
    ("Z,2026-03-09T10:00:00Z,WH-C,teleport,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: kind: 'teleport' is not one of"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,abc,,,,,u,,", "ledger.csv:5: quantity: 'abc' is not a number"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,0,,,,,u,,", "ledger.csv:5: quantity: a receipt's quantity must be greater than zero"),
    ("Z,2026-03-09T10:00:00Z,WH-C,adjustment,MOR10,L1,,0,,,,correction,u,,", "ledger.csv:5: quantity: an adjustment's quantity must be non-zero"),
    ("Z,2026-03-09T10:00:00Z,WH-C,count,MOR10,L1,,-1,,,,,u,,", "ledger.csv:5: quantity: a count's quantity"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,2.5,,,,,u,,", "ledger.csv:5: quantity: 2.5 is not a whole number of tablets (MOR10)"),
    ("Z,2026-03-09T10:00:00Z,NOPE,receipt,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: facility_code: unknown facility 'NOPE'"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,NOPE,L1,,1,,,,,u,,", "ledger.csv:5: item_code: unknown item 'NOPE'"),
    ("Z,2026-03-09T10:00:00Z,WH-C,transfer_out,MOR10,L1,,1,,,NOPE,,u,,", "ledger.csv:5: counterparty_code: unknown facility 'NOPE'"),
    ("Z,2026-03-09T10:00:00Z,WH-C,transfer_out,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: counterparty_code: a transfer_out needs"),
    ("Z,2026-03-09T10:00:00Z,WH-C,loss,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: reason: a loss needs a reason"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,1,,,,,,,", "ledger.csv:5: recorded_by: required value is missing"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,NEWLOT,,1,,,,,u,,", "ledger.csv:5: expiry_date: expiry_date is required on the receipt of new lot NEWLOT"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,2030-01-01,1,,,,,u,,", "ledger.csv:5: expiry_date: lot L1 of MOR10 expires on 2028-01-31, not 2030-01-01"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,31/01/2028,1,,,,,u,,", "ledger.csv:5: expiry_date: '31/01/2028' is not a date"),
    # An expired lot is received only for destruction (a transfer_in or a count may still bring one in).
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,OLD,2026-03-08,1,,,,,u,,", "ledger.csv:5: expiry_date: lot OLD of MOR10 expired on 2026-03-08: an expired lot is received only for destruction"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,OLD,2026-03-08,1,,,,expired,u,,", "ledger.csv:5: expiry_date: lot OLD of MOR10 expired on 2026-03-08"),
    ("Z,2026-03-09T10:00:00Z,WH-C,transfer_out,MOR10,L1,,1,,,WH-C,,u,,", "ledger.csv:5: counterparty_code: a transfer's counterparty must be another facility"),
    ("Z,2026-03-09T10:00:00Z,WH-C,dispense,MOR10,GHOST,,1,LY0000000001,,,,u,,", "ledger.csv:5: lot_number: MOR10 has no lot 'GHOST'"),
    ("Z,2026-03-09T10:00:00Z,WH-C,dispense,MOR10,L1,,1001,LY0000000001,,,,u,,", "ledger.csv:5: quantity: insufficient stock of MOR10 lot L1 at WH-C: on hand 1000, asked 1001"),
    ("Z,2026-03-09T10:00:00Z,WH-C,adjustment,MOR10,L1,,1,,,,correction,u,,NOPE", "ledger.csv:5: reverses: reverses names entry 'NOPE'"),
    # The chain's field separator inside a text would let text move between fields unseen.
    ("Z,2026-03-09T10:00:00Z,WH-C,loss,MOR10,L1,,1,,,,dam\x1faged,u,,", "ledger.csv:5: reason: contains the control character U+001F"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,1,,,,,u,GRN\x1e7,", "ledger.csv:5: document_number: contains the control character U+001E"),
    ("R1,2026-03-01T08:00:00+02:00,WH-C,receipt,MOR10,L1,2028-01-31,999,,,MEDIPHARM,,u-wh,GRN-1,", "ledger.csv:5: entry_id: entry R1 already appears on line 2 with different content"),
]


@pytest.mark.parametrize("row,expected", BAD_ROWS, ids=[e.split(": ")[1] + "-" + str(i) for i, (_r, e) in enumerate(BAD_ROWS)])
def test_bad_ledger_row_named_and_nothing_stored(session, tmp_path, row, expected):
    problems = problems_of(session, bad_ledger(tmp_path, row))
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_reported_not_just_the_first(session, tmp_path):
    folder = bad_ledger(tmp_path,
                        "Z1,2026-03-09T10:00:00Z,NOPE,receipt,MOR10,L1,,1,,,,,u,,",
                        "Z2,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,x,,,,,u,,",
                        "Z3,2026-03-09T10:00:00Z,WH-C,loss,MOR10,L1,,1,,,,,u,,")
    problems = problems_of(session, folder)
    assert [p.split(":")[1] for p in problems] == ["5", "6", "7"]


def test_conflict_with_stored_entry(session, tmp_path):
    import_dataset(session, write_dataset(tmp_path / "ds"))
    session.commit()
    before = count_entries(session)
    changed = [r.replace(",30,LY0000000001", ",31,LY0000000001") for r in LEDGER_ROWS]
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, write_dataset(tmp_path / "ds2", ledger_rows=changed))
    session.rollback()
    assert any("ledger.csv:9: entry_id: entry D1 was already recorded with different content" in str(p)
               for p in err.value.problems)
    assert count_entries(session) == before


@pytest.mark.parametrize("name,body,expected", [
    ("facilities.csv", FACILITIES + "H9,Clinic,Tripoli,spaceship,\n", "facilities.csv:5: kind: 'spaceship' is not one of"),
    ("facilities.csv", FACILITIES + "H9,Clinic,Tripoli,hospital,NOPE\n", "facilities.csv:5: parent_code: unknown facility 'NOPE'"),
    ("facilities.csv", FACILITIES + "H1,Again,Tripoli,hospital,\n", "facilities.csv:5: code: 'H1' already appears on line 3"),
    ("facilities.csv", FACILITIES.replace("parent_code", "parent_code,colour"), "facilities.csv:1: colour: unknown column"),
    ("facilities.csv", FACILITIES.replace(",region", ""), "facilities.csv:1: region: required column is missing"),
    ("items.csv", ITEMS + "X,Thing,,,piece,maybe,\n", "items.csv:5: controlled: 'maybe' is not true or false"),
    ("items.csv", ITEMS + "X,Thing,,,piece,false,-3\n", "items.csv:5: max_dispense_quantity: must be greater than zero"),
    ("items.csv", ITEMS + "X,,,,piece,false,\n", "items.csv:5: name: required value is missing"),
    ("patients.csv", PATIENTS + "LY3,1990,X,,\n", "patients.csv:4: sex: 'X' is not one of F, M, U"),
    ("patients.csv", PATIENTS + "LY3,nineteen,F,,\n", "patients.csv:4: birth_year: 'nineteen' is not a whole number"),
    ("patients.csv", PATIENTS + "LY3,1990,F,NOPE,\n", "patients.csv:4: home_facility_code: unknown facility 'NOPE'"),
    ("patients.csv", PATIENTS + "LY3,1990,F,,2026-13-01\n", "patients.csv:4: deceased_on: '2026-13-01' is not a date"),
    ("prescriptions.csv", PRESCRIPTIONS + "RX2,LY0000000001,H1,dr,MOR10,0,30,2026-03-01,\n", "prescriptions.csv:3: quantity: must be greater than zero"),
    ("prescriptions.csv", PRESCRIPTIONS + "RX2,LY0000000001,H1,dr,NOPE,10,30,2026-03-01,\n", "prescriptions.csv:3: item_code: unknown item 'NOPE'"),
    ("prescriptions.csv", PRESCRIPTIONS + "RX2,LY0000000001,H1,dr,MOR10,10,0,2026-03-01,\n", "prescriptions.csv:3: days_supply: 0 is outside 1..3660"),
])
def test_bad_master_data_named_and_nothing_stored(session, tmp_path, name, body, expected):
    problems = problems_of(session, write_dataset(tmp_path / "bad", **{name: body}))
    assert any(p.startswith(expected) for p in problems), problems


def test_not_utf8_and_not_a_folder(session, tmp_path):
    folder = write_dataset(tmp_path / "bad")
    (folder / "items.csv").write_bytes(ITEMS.encode("utf-16"))
    problems = problems_of(session, folder)
    assert any(p.startswith("items.csv") for p in problems), problems
    assert problems_of(session, tmp_path / "missing")[0].endswith("not a folder")


def test_policy_breaks_imported(session, tmp_path):
    """Dispenses beyond the prescription, to a ghost or deceased patient: stored, not refused."""
    import_dataset(session, write_dataset(tmp_path / "ds"))
    session.commit()
    ids = set(session.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.kind == "dispense")))
    assert {"D1", "D2", "D3", "D4", "D5"} <= ids


def test_ledger_only_import_against_existing_master_data(session, tmp_path):
    import_dataset(session, write_dataset(tmp_path / "ds", ledger_rows=LEDGER_ROWS[:3]))
    session.commit()
    only = tmp_path / "only"
    only.mkdir()
    (only / "ledger.csv").write_text("\n".join([HEADER, *LEDGER_ROWS[3:5]]) + "\n", encoding="utf-8")
    report = import_dataset(session, only)
    session.commit()
    assert report.entries_added == 2
    assert lot_stock(session, "H1", "MOR10", "L1") == 300
    shutil.rmtree(only)




def test_empty_cells_are_stored_as_null(session, tmp_path):
    """An empty cell is stored as NULL, never as '', in the ledger and in master data (on SQLite the
    bulk writes hand the driver '' and the INSERT turns it into NULL). A re-import that empties a
    master-data cell sets it back to NULL; an unchanged re-import writes nothing."""
    from sqlalchemy import text

    def one(sql):
        return session.execute(text(sql)).one()

    import_dataset(session, write_dataset(tmp_path / "ds"))
    session.commit()
    empty = " OR ".join(f"{c} = ''" for c in ("prescription_ref", "counterparty", "reason", "document_number",
                                               "reverses", "serial_number"))
    assert one(f"SELECT count(*) FROM ledger_entry WHERE {empty}") == (0,)
    receipt = one("SELECT patient_id, prescription_ref, book_quantity, reason, reverses, serial_number, "
                  "counterparty_facility_id, counterparty, document_number FROM ledger_entry WHERE entry_id = 'R1'")
    assert tuple(receipt) == (None, None, None, None, None, None, None, "MEDIPHARM", "GRN-1")
    dispense = one("SELECT p.health_card_id, e.prescription_ref, e.counterparty_facility_id FROM ledger_entry e "
                   "JOIN patient p ON p.id = e.patient_id WHERE e.entry_id = 'D1'")
    assert tuple(dispense) == ("LY0000000001", "RX1", None)
    assert one("SELECT book_quantity, reverses FROM ledger_entry WHERE entry_id = 'C1'")[0] == 163_000
    assert one("SELECT reverses FROM ledger_entry WHERE entry_id = 'V1'") == ("D4",)
    assert one("SELECT count(*) FROM ledger_entry e JOIN facility f ON f.id = e.counterparty_facility_id "
               "WHERE f.code = 'H1' AND e.kind = 'transfer_out'") == (2,)
    if session.get_bind().dialect.name == "sqlite":
        assert one("SELECT typeof(patient_id), typeof(book_quantity) FROM ledger_entry WHERE entry_id = 'C1'") \
            == ("null", "integer")
        assert one("SELECT typeof(patient_id) FROM ledger_entry WHERE entry_id = 'D1'") == ("integer",)
    patient = "SELECT birth_year, sex, home_facility_id, deceased_on, registered FROM patient WHERE health_card_id = '{}'"
    first = one(patient.format("LY0000000001"))
    assert first[:2] == (1970, "F") and first[2] is not None and first[3] is None and bool(first[4])
    assert one("SELECT diagnosis_code FROM prescription WHERE code = 'RX1'") == ("C50.9",)
    assert not bool(one(patient.format("LY9999999999"))[4])

    again = import_dataset(session, write_dataset(tmp_path / "ds"))
    session.commit()
    assert again.entries_added == 0

    emptied = write_dataset(
        tmp_path / "emptied",
        patients=None, prescriptions=None,
        **{"patients.csv": "health_card_id,birth_year,sex,home_facility_code,deceased_on\n"
                           "LY0000000001,,,,\nLY0000000002,1950,M,H1,2026-02-01\n",
           "prescriptions.csv": PRESCRIPTIONS.replace(",C50.9", ",")})
    import_dataset(session, emptied)
    session.commit()
    assert tuple(one(patient.format("LY0000000001"))[:4]) == (None, None, None, None)
    assert one(patient.format("LY0000000002"))[:2] == (1950, "M")
    assert one("SELECT diagnosis_code FROM prescription WHERE code = 'RX1'") == (None,)


def test_sample_dataset_imports_and_reimports(session):
    """The committed generated set imports whole, verifies, and a second import adds nothing."""
    rows = sum(1 for _ in (SMALL / "ledger.csv").open(encoding="utf-8")) - 1
    first = import_dataset(session, SMALL)
    session.commit()
    assert first.entries_added == rows
    again = import_dataset(session, SMALL)
    session.commit()
    assert again.entries_added == 0 and again.entries_already_present == rows
    assert again.patients == first.patients and again.prescriptions == first.prescriptions
    assert count_entries(session) == rows
    assert balances.drift(session) == []
    assert chain.verify(session).ok


def test_large_sqlite_import_rebuilds_lookup_indexes(sqlite_engine, monkeypatch):
    from sqlalchemy import text

    from stock import bulk, bulk_write
    from stock.db import session_factory

    def indexes():
        with sqlite_engine.connect() as conn:
            return sorted(conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='ledger_entry'")).all())

    before = indexes()
    monkeypatch.setattr(bulk_write, "BULK_INDEX_THRESHOLD", 100)
    with session_factory(sqlite_engine)() as s:
        import_dataset(s, SMALL)
        s.commit()
        assert chain.verify(s).ok and balances.drift(s) == []
    assert indexes() == before
    with sqlite_engine.connect() as conn:
        plan = conn.execute(text("EXPLAIN QUERY PLAN SELECT * FROM ledger_entry WHERE patient_id = 1")).all()
    assert "ix_ledger_entry_patient_id" in str(plan)


def test_failed_large_import_keeps_indexes(sqlite_engine, monkeypatch, tmp_path):
    from sqlalchemy import text

    from stock import bulk, bulk_write
    from stock.db import session_factory

    with sqlite_engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type='index'")).scalar()
    monkeypatch.setattr(bulk_write, "BULK_INDEX_THRESHOLD", 1)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    folder = write_dataset(tmp_path / "ds")
    original = bulk_write._drop_lookup_indexes

    def drop_then_fail(cur, adding):
        original(cur, adding)
        boom()

    monkeypatch.setattr(bulk_write, "_drop_lookup_indexes", drop_then_fail)
    with session_factory(sqlite_engine)() as s:
        with pytest.raises(RuntimeError):
            import_dataset(s, folder)
        s.rollback()
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type='index'")).scalar() == before
        assert conn.execute(text("SELECT count(*) FROM ledger_entry")).scalar() == 0


def test_fast_simulation_matches_exact_loop(tmp_path, monkeypatch):
    """The vectorised balance simulation gives the exact loop's effects, counts' book quantities,
    balances and chain, also on top of stock already stored (the second import starts from it)."""
    from datetime import datetime, timezone

    from sqlalchemy import text

    from stock import bulk, bulk_write
    from stock.db import session_factory
    from tests.conftest import make_sqlite

    lines = (SMALL / "ledger.csv").read_text(encoding="utf-8").splitlines()
    half = len(lines) // 2
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(SMALL, first)
    (first / "ledger.csv").write_text("\n".join(lines[:half]) + "\n", encoding="utf-8")
    second.mkdir()
    (second / "ledger.csv").write_text("\n".join([lines[0], *lines[half:]]) + "\n", encoding="utf-8")
    now = datetime(2026, 7, 1, tzinfo=timezone.utc)  # after the last movement of the data set
    real = bulk._simulate_fast

    def run(name: str, exact: bool):
        plans = []

        def fast(*args):
            plans.append(real(*args))
            return None if exact else plans[-1]

        monkeypatch.setattr(bulk, "_simulate_fast", fast)
        (tmp_path / name).mkdir()
        engine = make_sqlite(tmp_path / name)
        with session_factory(engine)() as s:
            for folder in (first, second):
                import_dataset(s, folder, now=now)
                s.commit()
            assert chain.verify(s).ok and balances.drift(s) == []
            entries = s.execute(text("SELECT entry_id, chain_seq, chain_hash, effect, book_quantity, lot_id "
                                     "FROM ledger_entry ORDER BY id")).all()
            stock = s.execute(text("SELECT facility_id, lot_id, on_hand FROM balance "
                                   "ORDER BY facility_id, lot_id")).all()
        engine.dispose()
        assert len(plans) == 2 and all(p is not None for p in plans)  # the fast pass was sure
        return entries, stock

    fast_entries, fast_stock = run("fast", exact=False)
    exact_entries, exact_stock = run("exact", exact=True)
    assert fast_entries == exact_entries and fast_stock == exact_stock
    assert any(book is not None for *_, book, _lot in fast_entries)  # counts were simulated


# --- GS1: item GTINs and pack serials ------------------------------------------------------------

ITEMS_GTIN = """code,name,atc_code,form,unit,controlled,max_dispense_quantity,gtin
MOR10,Morphine 10 mg tablet,N02AA01,tablet,tablet,true,60,5012345678900
INSG,Insulin glargine 100 IU/ml,A10AE04,injection,ml,false,,09501101530003
GLOVE,Surgical gloves,,,piece,false,,
"""
SERIAL_HEADER = HEADER + ",serial_number"
SERIAL_ROWS = [r + "," for r in LEDGER_ROWS[:3]] + [
    "S1,2026-03-02T08:00:00+02:00,WH-C,dispense,MOR10,L1,,1,LY0000000001,,,,u-wh,,,SN-1",
    "S2,2026-03-02T08:01:00+02:00,WH-C,dispense,MOR10,L1,,1,LY0000000001,,,,u-wh,,,",
    "S3,2026-03-02T08:02:00+02:00,WH-C,dispense,MOR10,L1,,1,LY0000000001,,,,u-wh,,,SN-1",
]


def serial_dataset(folder: Path, rows=None) -> Path:
    return write_dataset(folder, items_csv=None, **{
        "items.csv": ITEMS_GTIN,
        "ledger.csv": "\n".join([SERIAL_HEADER, *(SERIAL_ROWS if rows is None else rows)]) + "\n"})


def test_gtins_and_serials_imported_chained_and_idempotent(session, tmp_path):
    from stock.models import Item

    report = import_dataset(session, serial_dataset(tmp_path / "ds"))
    session.commit()
    assert report.entries_added == 6
    gtins = dict(session.execute(select(Item.code, Item.gtin)).all())
    assert gtins == {"MOR10": "05012345678900", "INSG": "09501101530003", "GLOVE": None}
    serials = dict(session.execute(select(LedgerEntry.entry_id, LedgerEntry.serial_number)).all())
    assert (serials["S1"], serials["S2"], serials["S3"], serials["R1"]) == ("SN-1", None, "SN-1", None)
    assert chain.verify(session).ok  # the bulk path's text (Arrow) equals verify's (SQL)
    again = import_dataset(session, serial_dataset(tmp_path / "ds"))
    session.commit()
    assert (again.entries_added, again.entries_already_present) == (0, 6)
    # A file without the gtin column leaves stored GTINs alone; one with an empty cell clears it.
    import_dataset(session, write_dataset(tmp_path / "plain", ledger_rows=[]))
    session.commit()
    assert session.scalar(select(Item.gtin).where(Item.code == "MOR10")) == "05012345678900"


def test_serial_changed_on_reimport_is_a_conflict(session, tmp_path):
    import_dataset(session, serial_dataset(tmp_path / "ds"))
    session.commit()
    rows = [r.replace("u-wh,,,SN-1", "u-wh,,,SN-9") if r.startswith("S1,") else r for r in SERIAL_ROWS]
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, serial_dataset(tmp_path / "ds2", rows))
    session.rollback()
    assert any(str(p).startswith("ledger.csv:5: entry_id: entry S1 was already recorded with different content")
               and "serial_number: stored 'SN-1', now 'SN-9'" in str(p) for p in err.value.problems)


def test_gtin_moves_between_items_in_one_import(session, tmp_path):
    from stock.models import Item

    import_dataset(session, serial_dataset(tmp_path / "ds"))
    session.commit()
    swapped = ITEMS_GTIN.replace("60,5012345678900", "60,09501101530003").replace(",,09501101530003", ",,5012345678900")
    import_dataset(session, write_dataset(tmp_path / "swap", ledger_rows=[], **{"items.csv": swapped}))
    session.commit()
    gtins = dict(session.execute(select(Item.code, Item.gtin)).all())
    assert gtins == {"MOR10": "09501101530003", "INSG": "05012345678900", "GLOVE": None}


@pytest.mark.parametrize("items,expected", [
    (ITEMS_GTIN.replace("5012345678900", "5012345678901"),
     "items.csv:2: gtin: GTIN 5012345678901 has a wrong check digit: 1, where 0 was expected"),
    (ITEMS_GTIN.replace("5012345678900", "50123456"), "items.csv:2: gtin: GTIN 50123456 has a wrong check digit"),
    (ITEMS_GTIN.replace("5012345678900", "501234567891"), "items.csv:2: gtin: GTIN 501234567891 has a wrong check digit"),
    (ITEMS_GTIN.replace("5012345678900", "12345"), "items.csv:2: gtin: '12345' is not a GTIN (8, 12, 13 or 14 digits)"),
    (ITEMS_GTIN.replace("5012345678900", "ABC"), "items.csv:2: gtin: 'ABC' is not a GTIN"),
    (ITEMS_GTIN.replace("false,,\n", "false,,05012345678900\n"),
     "items.csv:4: gtin: GTIN 05012345678900 is already given on line 2"),
])
def test_bad_gtin_named_and_nothing_stored(session, tmp_path, items, expected):
    from stock.models import Item

    problems = problems_of(session, write_dataset(tmp_path / "bad", **{"items.csv": items}))
    assert any(p.startswith(expected) for p in problems), problems
    assert session.scalar(select(func.count()).select_from(Item)) == 0


def test_gtin_of_another_stored_item_refused(session, tmp_path):
    import_dataset(session, serial_dataset(tmp_path / "ds"))
    session.commit()
    other = "code,name,unit,controlled,gtin\nPARA,Paracetamol 500 mg tablet,tablet,false,5012345678900\n"
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, write_dataset(tmp_path / "other", ledger_rows=[], facilities_csv=None,
                                              **{"items.csv": other}))
    session.rollback()
    assert "items.csv:2: gtin: GTIN 5012345678900 already belongs to item MOR10" in [str(p) for p in err.value.problems]


@pytest.mark.parametrize("serial,expected", [
    ("S" * 21, "ledger.csv:5: serial_number: serial_number 'SSSSSSSSSSSSSSSSSSSSS' is longer than 20 characters"),
    ("SN 1", "ledger.csv:5: serial_number: serial_number 'SN 1' holds ' ', outside GS1's character set"),
    ("SN#1", "ledger.csv:5: serial_number: serial_number 'SN#1' holds '#'"),
])
def test_bad_serial_named_and_nothing_stored(session, tmp_path, serial, expected):
    rows = [r.replace("u-wh,,,SN-1", f"u-wh,,,{serial}") if r.startswith("S1,") else r for r in SERIAL_ROWS]
    problems = problems_of(session, serial_dataset(tmp_path / "bad", rows))
    assert any(p.startswith(expected) for p in problems), problems


def test_sqlite_import_checks_references_itself_and_leaves_enforcement_on(sqlite_engine, tmp_path):
    """An import into SQLite runs without the row-by-row foreign-key checks (it resolves every
    reference itself) and hands its connection back with them on, after a success as after a
    refusal."""
    Session = session_factory(sqlite_engine)
    seen: list[int] = []
    with Session() as s:
        probe = lambda *_: seen.append(s.connection().exec_driver_sql("PRAGMA foreign_keys").scalar())  # noqa: E731
        import_dataset(s, SMALL, progress=probe)
        s.commit()
    assert seen and set(seen) == {0}

    def enforced() -> int:
        with sqlite_engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA foreign_keys").scalar()

    assert enforced() == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ledger.csv").write_text(
        "entry_id,occurred_at,facility_code,kind,item_code,lot_number,expiry_date,quantity,health_card_id,"
        "prescription_id,counterparty_code,reason,recorded_by,document_number,reverses\n"
        "x1,2026-03-01T09:00:00+02:00,NOPE,receipt,NOPE,L1,2027-01-01,5,,,,,u1,,\n", encoding="utf-8")
    with Session() as s, pytest.raises(ImportFailed) as err:
        import_dataset(s, bad)
    told = [str(p) for p in err.value.problems]
    assert any("facility_code: unknown facility 'NOPE'" in p for p in told)
    assert any("item_code: unknown item 'NOPE'" in p for p in told)
    assert enforced() == 1
    with sqlite_engine.begin() as conn, pytest.raises(IntegrityError):
        conn.exec_driver_sql("INSERT INTO lot (item_id, lot_number) VALUES (999999, 'orphan')")


ADJ = "{eid},{at},WH-C,adjustment,MOR10,L1,,{q},,,,correction,u,,{rev}"


@pytest.mark.parametrize("rows,expected", [
    # The reversed entry happens after its reversal (the file's lines are applied in time order).
    ([ADJ.format(eid="V", at="2026-03-09T10:00:00Z", q=-1, rev="A"),
      ADJ.format(eid="A", at="2026-03-09T11:00:00Z", q=1, rev="")],
     ["ledger.csv:5: reverses: reverses names entry 'A', which is not recorded before this one"]),
    ([ADJ.format(eid="V", at="2026-03-09T10:00:00Z", q=-1, rev="V")],
     ["ledger.csv:5: reverses: reverses names entry 'V', which is not recorded before this one"]),
    # Two reversals of one entry: the later is refused.
    ([ADJ.format(eid="A", at="2026-03-09T09:00:00Z", q=2, rev=""),
      ADJ.format(eid="V2", at="2026-03-09T11:00:00Z", q=-2, rev="A"),
      ADJ.format(eid="V1", at="2026-03-09T10:00:00Z", q=-2, rev="A")],
     ["ledger.csv:6: reverses: Entry A was already reversed."]),
], ids=["reverses-a-later-entry", "reverses-itself", "reversed-twice"])
def test_reversal_order_in_one_file(session, tmp_path, rows, expected):
    assert [p for p in problems_of(session, bad_ledger(tmp_path, *rows)) if ": reverses: " in p] == expected


def test_reversal_of_an_entry_stored_and_reversed_before(session, tmp_path):
    rows = [ADJ.format(eid="A", at="2026-03-09T09:00:00Z", q=2, rev=""),
            ADJ.format(eid="V1", at="2026-03-09T10:00:00Z", q=-2, rev="A")]
    import_dataset(session, bad_ledger(tmp_path, *rows))
    session.commit()
    again = write_dataset(tmp_path / "again", ledger_rows=[ADJ.format(eid="V2", at="2026-03-10T10:00:00Z", q=-2, rev="A"),
                                                           ADJ.format(eid="B", at="2026-03-10T11:00:00Z", q=1, rev=""),
                                                           ADJ.format(eid="VB", at="2026-03-10T12:00:00Z", q=-1, rev="B")])
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, again)
    session.rollback()
    assert [str(p) for p in err.value.problems] == ["ledger.csv:2: reverses: Entry A was already reversed."]
