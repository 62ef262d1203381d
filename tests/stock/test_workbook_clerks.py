"""Workbooks as clerks make them: a month typed as an Excel date, Excel's empty extra sheets, a
title row above the header. Both databases."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime

import pytest
from sqlalchemy import select

from stock.importer import ImportFailed, import_dataset
from stock.models import StockReport
from tests.stock import test_reports as rep
from tests.stock.test_workbook_import import write_book


def report_cells(period_cell) -> list[list]:
    """The reports sheet of tests.stock.test_reports with every period as ``period_cell(text)``."""
    rows = list(csv.reader(io.StringIO("\n".join([rep.HEADER, *rep.ROWS]))))
    out = [rows[0]]
    for row in rows[1:]:
        cells = [float(v) if re.fullmatch(r"-?\d+(\.\d+)?", v) else (v or None) for v in row]
        cells[2] = period_cell(row[2])
        out.append(cells)
    return out


def sheets(period_cell=lambda text: text, **extra) -> dict:
    return {"facilities": rep.FACILITIES, "items": rep.ITEMS, "stock_reports": report_cells(period_cell), **extra}


def periods(session) -> list[str]:
    return list(session.scalars(select(StockReport.period).order_by(StockReport.id)))


@pytest.mark.parametrize("cell", [
    lambda text: datetime(int(text[:4]), int(text[5:]), 1),          # Excel's date-time at midnight
    lambda text: date(int(text[:4]), int(text[5:]), 1),
])
def test_a_month_typed_as_a_date_is_that_month(session, tmp_path, cell):
    book = write_book(tmp_path / "reports.xlsx", sheets(cell))
    import_dataset(session, book)
    session.commit()
    assert periods(session) == ["2019-01", "2019-02", "2019-03", "2019-01"]


def test_excels_empty_extra_sheets_are_ignored_but_one_with_content_is_not(session, tmp_path):
    book = write_book(tmp_path / "reports.xlsx", sheets(Sheet1=[], Feuil2=[[None, None], [None]]))
    import_dataset(session, book)
    session.commit()
    assert len(periods(session)) == 4
    session.rollback()
    notes = write_book(tmp_path / "notes.xlsx", sheets(Sheet1=[[None], ["call the warehouse"]]))
    with pytest.raises(ImportFailed) as failed:
        import_dataset(session, notes)
    assert any(str(p).startswith("notes.xlsx[Sheet1]: unknown sheet 'Sheet1'") for p in failed.value.problems)


def test_a_title_row_above_the_header_is_one_problem_saying_where_the_header_must_be(session, tmp_path):
    body = report_cells(lambda text: text)
    titled = [["Rapport mensuel LMIS - District sanitaire"], [], *body]
    book = write_book(tmp_path / "titled.xlsx", sheets(stock_reports=titled))
    with pytest.raises(ImportFailed) as failed:
        import_dataset(session, book)
    assert [str(p) for p in failed.value.problems] == [
        "titled.xlsx[stock_reports]:1: the header must be row 1, but row 3 holds it: delete the 2 row(s) above it "
        "(row 1 holds 'Rapport mensuel LMIS - District sanitaire')"]
    nothing = write_book(tmp_path / "nothing.xlsx", sheets(stock_reports=[["Rapport"], ["1", "2"]]))
    with pytest.raises(ImportFailed) as failed:
        import_dataset(session, nothing)
    (p,) = failed.value.problems
    assert str(p).startswith("nothing.xlsx[stock_reports]:1: row 1 must be the header naming the columns "
                             "(facility_code, item_code, period,")
