"""`dawa import BOOK.xlsx`: the contract's sheets in one workbook, through the very checks of the CSV
path, every problem named by workbook, sheet, row and column, all or nothing."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select, text

from stock import balances, chain
from stock.csvread import read_sheet
from stock.importer import FACILITY_COLUMNS, FILES, ImportFailed, import_dataset
from stock.models import Facility, Item, LedgerEntry, Patient, Prescription
from stock.workbook import Workbook as Book
from stock.workbook import cell_text
from tests.stock.test_importer import (
    BAD_ROWS,
    FACILITIES,
    HEADER,
    ITEMS,
    LEDGER_ROWS,
    PATIENTS,
    PRESCRIPTIONS,
    count_entries,
    lot_stock,
    write_dataset,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
NUMBER = re.compile(r"-?\d+(\.\d+)?")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NUMERIC = {"quantity", "max_dispense_quantity", "birth_year", "days_supply"}
DATES = {"expiry_date", "deceased_on", "issued_on"}


def typed(column: str, value: str):
    """The cell Excel would make of ``value`` typed into ``column``: numbers, dates and booleans
    typed, anything else (ids, timestamps with offsets, malformed values) text."""
    if value == "":
        return None
    if column in NUMERIC and NUMBER.fullmatch(value):
        return float(value) if "." in value else int(value)
    if column in DATES and DATE.fullmatch(value):
        try:
            return datetime.combine(date.fromisoformat(value), time(0))
        except ValueError:
            return value
    if column == "controlled" and value in ("true", "false"):
        return value == "true"
    return value


def write_book(path: Path, sheets: dict[str, str | list[list]], *, typed_cells: bool = True) -> Path:
    """A workbook of ``sheets``: a CSV text (typed like Excel would) or rows of cells as given."""
    wb = Workbook()
    wb.remove(wb.active)
    for title, body in sheets.items():
        ws = wb.create_sheet(title)
        if isinstance(body, str):
            rows = list(csv.reader(io.StringIO(body)))
            header = rows[0]
            ws.append(header)
            for row in rows[1:]:
                ws.append([typed(c, v) if typed_cells else (v or None) for c, v in zip(header, row)])
        else:
            for row in body:
                ws.append(row)
    wb.save(path)
    return path


def dataset_sheets(ledger_rows=None, **overrides) -> dict[str, str]:
    sheets = {"facilities": FACILITIES, "items": ITEMS, "patients": PATIENTS, "prescriptions": PRESCRIPTIONS,
              "ledger": "\n".join([HEADER, *(LEDGER_ROWS if ledger_rows is None else ledger_rows)]) + "\n"}
    sheets.update(overrides)
    return {k: v for k, v in sheets.items() if v is not None}


def book(tmp_path, name="book.xlsx", ledger_rows=None, **overrides) -> Path:
    return write_book(tmp_path / name, dataset_sheets(ledger_rows, **overrides))


def state(session) -> dict:
    """Everything an import stores, by business keys (not row ids)."""
    q = lambda sql: session.execute(text(sql)).all()  # noqa: E731
    return {
        "entries": q("SELECT e.entry_id, f.code, e.chain_seq, e.chain_hash, e.kind, i.code, l.lot_number, "
                     "l.expiry_date, e.quantity, e.effect, e.book_quantity, e.occurred_at, e.recorded_at, "
                     "p.health_card_id FROM ledger_entry e JOIN facility f ON f.id = e.facility_id "
                     "JOIN item i ON i.id = e.item_id JOIN lot l ON l.id = e.lot_id "
                     "LEFT JOIN patient p ON p.id = e.patient_id ORDER BY e.entry_id"),
        "heads": chain.heads(session),
        "facilities": q("SELECT f.code, f.name, f.region, f.kind, p.code FROM facility f "
                        "LEFT JOIN facility p ON p.id = f.parent_id ORDER BY f.code"),
        "items": q("SELECT code, name, atc_code, form, unit, controlled, max_dispense_quantity FROM item ORDER BY code"),
        "patients": q("SELECT health_card_id, birth_year, sex, deceased_on, registered FROM patient "
                      "ORDER BY health_card_id"),
        "prescriptions": q("SELECT code, quantity, days_supply, issued_on FROM prescription ORDER BY code"),
        "balances": q("SELECT f.code, l.lot_number, b.on_hand FROM balance b JOIN facility f ON f.id = b.facility_id "
                      "JOIN lot l ON l.id = b.lot_id ORDER BY 1, 2"),
    }


def test_workbook_imports_exactly_like_the_same_data_as_csv(engine, tmp_path):
    """Typed cells (numbers, dates, booleans) and text cells alike: the same rows, balances and
    hash chain as the CSV folder, and a second import adds nothing."""
    from stock.db import session_factory

    with session_factory(engine)() as s:
        report = import_dataset(s, book(tmp_path), now=NOW)
        s.commit()
        assert report.entries_added == len(LEDGER_ROWS) and report.facilities == 3 and report.items == 3
        assert report.unregistered_patients == 1
        assert lot_stock(s, "H1", "MOR10", "L1") == 150 and lot_stock(s, "WH-C", "INSG", "I1") == 400
        assert chain.verify(s).ok and balances.drift(s) == []
        from_book = state(s)
        again = import_dataset(s, book(tmp_path, "again.xlsx"), now=NOW + timedelta(days=1))
        s.commit()
        assert again.entries_added == 0 and again.entries_already_present == len(LEDGER_ROWS)
        assert state(s) == from_book
        # and the CSV of the same data, over it, finds everything already there
        assert import_dataset(s, write_dataset(tmp_path / "ds"), now=NOW).entries_already_present == len(LEDGER_ROWS)
        s.commit()
        assert state(s) == from_book
    if engine.dialect.name == "sqlite":
        from tests.conftest import make_sqlite

        (tmp_path / "csv").mkdir()
        other = make_sqlite(tmp_path / "csv")
        with session_factory(other)() as s:
            import_dataset(s, write_dataset(tmp_path / "ds"), now=NOW)
            s.commit()
            assert state(s) == from_book
        other.dispose()


def test_sheet_reads_into_the_csv_readers_text_frame(tmp_path):
    path = write_book(tmp_path / "b.xlsx", {"facilities": FACILITIES})
    folder = write_dataset(tmp_path / "ds")
    with Book(path, FILES) as wb:
        sheet = wb.read("facilities.csv", FACILITY_COLUMNS)
    csv_sheet = read_sheet(folder / "facilities.csv", FACILITY_COLUMNS)
    assert sheet.problems == [] and sheet.name == "b.xlsx[facilities]"
    assert sheet.frame.dtypes.tolist() == csv_sheet.frame.dtypes.tolist()
    assert sheet.frame.equals(csv_sheet.frame)


@pytest.mark.parametrize("value,expected", [
    (None, ""), ("  H1 ", "H1"), (12, "12"), (12.0, "12"), (100.5, "100.5"), (0.30000000000000004, "0.3"),
    (-2.0, "-2"), (-0.0, "0"), (1e-7, "0.0000001"), (123456789012.5, "123456789012.5"), (True, "true"),
    (False, "false"), (datetime(2026, 3, 1), "2026-03-01"), (date(2026, 3, 1), "2026-03-01"),
    (datetime(2026, 3, 1, 9, 15), "2026-03-01T09:15:00"),
    (datetime(2026, 3, 1, 9, 15, tzinfo=timezone(timedelta(hours=2))), "2026-03-01T09:15:00+02:00"),
    (time(9, 15), "09:15:00"),
])
def test_cell_text(value, expected):
    assert cell_text(value) == expected


def problems_of(session, path) -> list[str]:
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, path, now=NOW)
    session.rollback()
    assert count_entries(session) == 0, "nothing may be stored on failure"
    assert session.scalar(select(func.count()).select_from(Facility)) == 0
    return [str(p) for p in err.value.problems]


# A worksheet cannot hold the control characters some of the CSV cases carry.
SHEET_BAD_ROWS = [(r, e) for r, e in BAD_ROWS if r.isprintable()]


@pytest.mark.parametrize("row,expected", SHEET_BAD_ROWS,
                         ids=[e.split(": ")[1] + "-" + str(i) for i, (_r, e) in enumerate(SHEET_BAD_ROWS)])
def test_bad_ledger_row_named_by_workbook_sheet_row_and_column(session, tmp_path, row, expected):
    """Every refusal of the CSV path (missing value, wrong type, outside domain, unknown facility
    or item, duplicate entry_id with other content, stock below zero ...) from a typed sheet."""
    path = book(tmp_path, ledger_rows=LEDGER_ROWS[:3] + [row])
    problems = problems_of(session, path)
    want = expected.replace("ledger.csv:", "book.xlsx[ledger]:")
    assert any(p.startswith(want) for p in problems), problems


@pytest.mark.parametrize("sheets,expected", [
    (dict(facilities=FACILITIES + "H9,Clinic,Tripoli,spaceship,\n"), "book.xlsx[facilities]:5: kind: 'spaceship' is not one of"),
    (dict(facilities=FACILITIES.replace("parent_code", "parent_code,colour")), "book.xlsx[facilities]:1: colour: unknown column"),
    (dict(facilities=FACILITIES.replace(",region", "")), "book.xlsx[facilities]:1: region: required column is missing"),
    (dict(items=ITEMS + "X,,,,piece,false,\n"), "book.xlsx[items]:5: name: required value is missing"),
    (dict(items=ITEMS + "X,Thing,,,piece,maybe,\n"), "book.xlsx[items]:5: controlled: 'maybe' is not true or false"),
    (dict(patients=PATIENTS + "LY3,nineteen,F,,\n"), "book.xlsx[patients]:4: birth_year: 'nineteen' is not a whole number"),
    (dict(prescriptions=PRESCRIPTIONS + "RX2,LY0000000001,H1,dr,NOPE,10,30,2026-03-01,\n"),
     "book.xlsx[prescriptions]:3: item_code: unknown item 'NOPE'"),
    (dict(Sheet1="a,b\n1,2\n"), "book.xlsx[Sheet1]: unknown sheet 'Sheet1' (expected sheets named facilities, items"),
    (dict(ledger_2025=HEADER + "\n"), "book.xlsx[ledger_2025]: unknown sheet"),
])
def test_bad_master_data_and_sheets_named(session, tmp_path, sheets, expected):
    problems = problems_of(session, book(tmp_path, **sheets))
    assert any(p.startswith(expected) for p in problems), problems


def ledger_cells(*rows: list) -> list[list]:
    """The ledger sheet as cells: the good rows as text, then ``rows`` as given (a list of cells
    by column name)."""
    names = HEADER.split(",")
    out = [names, *[r.split(",") for r in LEDGER_ROWS[:3]]]
    for cells in rows:
        out.append([cells.get(c) for c in names])
    return out


def cells(**values) -> dict:
    base = {"entry_id": "Z", "occurred_at": "2026-03-09T10:00:00+02:00", "facility_code": "WH-C",
            "kind": "receipt", "item_code": "MOR10", "lot_number": "L1", "quantity": 1, "recorded_by": "u"}
    base.update(values)
    return base


def test_excel_date_time_cell_refused_asking_for_an_offset(session, tmp_path):
    """Excel keeps no zone: a date-time cell is refused, never read in a guessed zone."""
    sheets = dataset_sheets()
    sheets["ledger"] = ledger_cells(cells(occurred_at=datetime(2026, 3, 9, 10, 0)),
                                    cells(entry_id="Z2", occurred_at=datetime(2026, 3, 9)))
    problems = problems_of(session, write_book(tmp_path / "book.xlsx", sheets))
    assert "book.xlsx[ledger]:5: occurred_at: timestamp '2026-03-09T10:00:00' has no zone offset " \
           "(write e.g. 2026-03-01T09:15:00+02:00)" in problems, problems
    assert any(p.startswith("book.xlsx[ledger]:6: occurred_at: timestamp '2026-03-09' has no zone offset")
               for p in problems), problems


def test_excel_typed_numbers_dates_and_booleans_read_as_contract_text(session, tmp_path):
    sheets = dataset_sheets()
    sheets["ledger"] = ledger_cells(
        cells(entry_id="N1", quantity=12.0),                                      # 12, not 12.0
        cells(entry_id="N2", lot_number="L9", expiry_date=datetime(2029, 5, 31), quantity=3),
        cells(entry_id="N3", item_code="INSG", lot_number="I1", quantity=0.25),
        cells(entry_id="N4", lot_number=2024, expiry_date=date(2030, 1, 31), quantity=1),  # a lot typed as a number
    )
    sheets["items"] = [["code", "name", "unit", "controlled", "max_dispense_quantity"],
                       ["MOR10", "Morphine 10 mg tablet", "tablet", True, 60.0],
                       ["INSG", "Insulin glargine", "ml", False, None],
                       ["GLOVE", "Surgical gloves", "piece", False, None]]
    sheets["patients"] = [["health_card_id", "birth_year", "sex", "deceased_on"],
                          ["LY0000000001", 1970, "F", None],
                          ["LY0000000002", 1950.0, "M", datetime(2026, 2, 1)]]
    import_dataset(session, write_book(tmp_path / "typed.xlsx", sheets), now=NOW)
    session.commit()
    rows = dict(session.execute(select(LedgerEntry.entry_id, LedgerEntry.quantity)
                                .where(LedgerEntry.entry_id.in_(["N1", "N2", "N3", "N4"]))).all())
    assert rows == {"N1": 12, "N2": 3, "N3": 0.25, "N4": 1}
    assert lot_stock(session, "WH-C", "MOR10", "L9") == 3 and lot_stock(session, "WH-C", "MOR10", "2024") == 1
    lots = dict(session.execute(text("SELECT lot_number, expiry_date FROM lot")).all())
    assert str(lots["L9"]) == "2029-05-31" and str(lots["2024"]) == "2030-01-31"
    items = {i.code: i for i in session.scalars(select(Item))}
    assert items["MOR10"].controlled and not items["INSG"].controlled and items["MOR10"].max_dispense_quantity == 60
    patients = {p.health_card_id: p for p in session.scalars(select(Patient))}
    assert patients["LY0000000002"].birth_year == 1950 and str(patients["LY0000000002"].deceased_on) == "2026-02-01"
    rx = session.scalars(select(Prescription)).one()   # quantity, days and date typed by the sheet builder
    assert (rx.quantity, rx.days_supply, str(rx.issued_on)) == (30, 30, "2026-03-01")


def test_empty_trailing_rows_ignored_and_empty_rows_between_keep_row_numbers(session, tmp_path):
    sheets = dataset_sheets()
    rows = ledger_cells()
    rows += [[None] * 15, ["   "] + [None] * 14, [None] * 15]   # trailing: empty, blanks only
    sheets["ledger"] = rows
    path = write_book(tmp_path / "book.xlsx", sheets)
    import_dataset(session, path, now=NOW)
    session.rollback()

    sheets["ledger"] = ledger_cells() + [[None] * 15] + ledger_cells(cells(quantity="abc"))[4:]
    problems = problems_of(session, write_book(tmp_path / "gap.xlsx", sheets))
    assert "gap.xlsx[ledger]:6: quantity: 'abc' is not a number" in problems, problems
    assert any(p.startswith("gap.xlsx[ledger]:5: entry_id: required value is missing") for p in problems), problems


def test_excel_error_cells_and_values_outside_the_header_named(session, tmp_path):
    sheets = dataset_sheets()
    rows = ledger_cells(cells(reason="#N/A", kind="loss"))
    rows.append([*rows[1], "stray"])
    sheets["ledger"] = rows
    problems = problems_of(session, write_book(tmp_path / "book.xlsx", sheets))
    assert "book.xlsx[ledger]:5: reason: the cell holds the Excel error #N/A" in problems, problems
    assert "book.xlsx[ledger]:6: P: value 'stray' in a column with no header" in problems, problems


def test_not_a_workbook_and_missing_workbook(session, tmp_path):
    fake = tmp_path / "fake.xlsx"
    fake.write_text("entry_id\n", encoding="utf-8")
    assert problems_of(session, fake)[0].startswith("fake.xlsx: not a readable .xlsx workbook")
    assert problems_of(session, tmp_path / "nowhere.xlsx") == ["nowhere.xlsx: no such file"]
    empty = write_book(tmp_path / "empty.xlsx", {"ledger": []})
    assert problems_of(session, empty) == ["empty.xlsx[ledger]:1: the sheet has no header row"]


def test_every_problem_in_every_sheet_reported_together(session, tmp_path):
    path = book(tmp_path, facilities=FACILITIES + "H9,Clinic,Tripoli,spaceship,\n",
                items=ITEMS + "X,Thing,,,piece,maybe,\n", Notes="a\n1\n")
    problems = problems_of(session, path)
    for want in ("book.xlsx[Notes]: unknown sheet 'Notes' (expected sheets named facilities, items, patients, "
                 "prescriptions, ledger, stock_reports)",
                 "book.xlsx[facilities]:5: kind:", "book.xlsx[items]:5: controlled:",
                 "book.xlsx[prescriptions]:2: facility_code: unknown facility 'H1'"):  # H1 was never stored
        assert any(p.startswith(want) for p in problems), (want, problems)
