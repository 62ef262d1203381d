"""The contract's files as the sheets of one Excel workbook (.xlsx).

A sheet is named like its contract file without ``.csv`` (``facilities``, ``items``, ``patients``,
``prescriptions``, ``ledger``, ``stock_reports``), has a header row and the same columns and rules
as the CSV. Each sheet is read into exactly the text frame ``csvread.read_sheet`` builds from a
CSV, so every check of the CSV path applies unchanged; problems name the workbook and the sheet
(``BOOK.xlsx[ledger]``) and the spreadsheet's own row number (the header is row 1).

Cells Excel typed come out as the contract's text:

- a number as it shows in Excel (at most 15 significant digits): ``12`` and not ``12.0``, ``100.5``;
- TRUE / FALSE as ``true`` / ``false``;
- a date cell (a date-time at midnight) as ``2026-03-01``;
- a date-time cell with a time of day as ``2026-03-01T09:15:00``, with no offset, which every
  timestamp and date column then refuses: Excel keeps no time zone, and guessing one would shift an
  auditor's times without telling. A timestamp is written as text with its offset
  (``2026-03-01T09:15:00+02:00``), which Excel leaves as typed;
- a formula as the value Excel last computed and saved with the file;
- an error value (``#N/A``, ``#REF!`` ...) is a problem;
- a date in a month column (``period``), as Excel makes of ``2019-03`` or ``Mar 2019`` typed
  there, is that month: ``2019-03``.

Workbooks as clerks make them: a sheet with another name that holds nothing (Excel's ``Sheet1``,
``Feuil2`` ...) is ignored; only one with content is a problem. A title row above the header is
named as such in one problem (the header must be row 1, and which row holds it), rather than as
every column missing.

Sheets are streamed with openpyxl's read-only reader a row at a time and gathered column by column
into Arrow text arrays, so a sheet of a million rows is never held twice.
"""

from __future__ import annotations

import zipfile
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
from openpyxl import load_workbook
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from stock.csvread import Problem, Sheet, check_header

SUFFIXES = (".xlsx",)
CHUNK = 65_536
"""Rows gathered as Python text before they are packed into an Arrow array."""
MONTH_COLUMNS = frozenset({"period"})
"""Columns holding a month (YYYY-MM): a date cell there is its month."""
HEADER_SEARCH = 10
"""Rows looked through for a header that is not in row 1, to say where it is."""
MAX_PROBLEMS_PER_KIND = 50
"""A sheet full of error cells is named this many times per column, not a million."""


def is_workbook(path: Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES and not Path(path).is_dir()


def cell_text(value) -> str:
    """One cell as the contract's text (see the module's docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.15g}"
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
        return "0" if text == "-0" else text
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # an ISO 8601 cell that carries its offset: exact
            return value.isoformat()
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value).strip()


class Workbook:
    """An open workbook: which contract files it holds, and each as a ``Sheet``.

    ``files`` are the contract's file names (``ledger.csv`` ...). Sheets with other names are
    problems, as a typo in a sheet name must not silently leave its rows out.
    """

    def __init__(self, path: Path, files: tuple[str, ...]):
        self.path = Path(path)
        self.problems: list[Problem] = []
        self.titles: dict[str, str] = {}   # contract file -> sheet title
        self._book = None
        try:
            self._book = load_workbook(self.path, read_only=True, data_only=True)
        except FileNotFoundError:
            self.problems.append(Problem(self.path.name, 0, "", "no such file"))
            return
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            self.problems.append(Problem(self.path.name, 0, "", f"not a readable .xlsx workbook ({exc})"))
            return
        expected = ", ".join(f.removesuffix(".csv") for f in files)
        for title in self._book.sheetnames:
            file = title.strip().lower() + ".csv"
            if file not in files and self._empty(title):
                continue
            if file not in files:
                self.problems.append(Problem(self._where(title), 0, "",
                                             f"unknown sheet {title!r} (expected sheets named {expected})"))
            elif file in self.titles:
                self.problems.append(Problem(self._where(title), 0, "",
                                             f"a second sheet for {file.removesuffix('.csv')} "
                                             f"(also {self.titles[file]!r})"))
            else:
                self.titles[file] = title

    def _empty(self, title: str) -> bool:
        for row in self._book[title].iter_rows(values_only=True):
            if any(cell_text(v) for v in row):
                return False
        return True

    def _where(self, title: str) -> str:
        return f"{self.path.name}[{title}]"

    def present(self, files: tuple[str, ...]) -> list[str]:
        """The contract files this workbook has a sheet for, in ``files`` order."""
        return [f for f in files if f in self.titles]

    def where(self, file: str) -> str:
        """How problems name the sheet of ``file``: ``BOOK.xlsx[ledger]``."""
        return self._where(self.titles.get(file, file.removesuffix(".csv")))

    def read(self, file: str, columns: dict[str, bool]) -> Sheet:
        """The sheet of ``file`` as the text frame ``csvread.read_sheet`` would give for the CSV."""
        name = self.where(file)
        ws = self._book[self.titles[file]]
        rows = ws.iter_rows(values_only=True)
        first = next(rows, None)
        header = [cell_text(v) for v in (first or ())]
        while header and header[-1] == "":
            header.pop()
        problems: list[Problem] = []
        if not header:
            sheet = Sheet(name, pd.DataFrame())
            sheet.problems.append(Problem(name, 1, "", "the sheet has no header row"))
            return sheet
        if not set(header) & set(columns):
            return self._no_header(name, header, rows, columns)
        months = [k for k, h in enumerate(header) if h in MONTH_COLUMNS]
        width = len(header)
        for k, h in enumerate(header):
            if h == "":
                problems.append(Problem(name, 1, get_column_letter(k + 1),
                                        "column has no name in the header row"))
        chunks: list[list[pa.Array]] = [[] for _ in range(width)]
        pending: list[list[str]] = [[] for _ in range(width)]
        blank_run = 0          # empty rows since the last row with a value (trailing ones are dropped)
        beyond = 0
        errors: dict[int, int] = {}
        row_number = 1
        empty = [""] * width

        def flush() -> None:
            for k in range(width):
                if pending[k]:
                    chunks[k].append(pa.array(pending[k], type=pa.large_string()))
                    pending[k] = []

        for values in rows:
            row_number += 1
            texts = [cell_text(v) for v in values]
            for k in months:
                if k < len(values) and isinstance(values[k], (datetime, date)):
                    texts[k] = f"{values[k].year:04d}-{values[k].month:02d}"
            if not any(texts):
                blank_run += 1
                continue
            for _ in range(blank_run):   # an empty row between rows stays a row, so numbers stay true
                for k in range(width):
                    pending[k].append("")
            blank_run = 0
            if len(texts) > width:
                if beyond < MAX_PROBLEMS_PER_KIND:
                    for k in range(width, len(texts)):
                        if texts[k]:
                            problems.append(Problem(name, row_number, get_column_letter(k + 1),
                                                    f"value {texts[k]!r} in a column with no header"))
                            beyond += 1
                            break
                texts = texts[:width]
            elif len(texts) < width:
                texts += empty[len(texts):]
            for k, text in enumerate(texts):
                if text in ERROR_CODES and isinstance(values[k], str):
                    if errors.get(k, 0) < MAX_PROBLEMS_PER_KIND:
                        problems.append(Problem(name, row_number, header[k] or get_column_letter(k + 1),
                                                f"the cell holds the Excel error {text}"))
                    errors[k] = errors.get(k, 0) + 1
                pending[k].append(text)
            if len(pending[0]) >= CHUNK:
                flush()
        flush()
        if len(set(header)) != len(header) or problems:
            frame = pd.DataFrame(columns=[h for h in header if h])   # the header is checked, not the rows
        else:
            frame = pd.DataFrame({h: pd.Series(pa.chunked_array(chunks[k], type=pa.large_string()), dtype="str")
                                  for k, h in enumerate(header)})
        sheet = check_header(name, frame, columns)
        sheet.problems.extend(problems)
        return sheet

    @staticmethod
    def _no_header(name: str, first: list[str], rows, columns: dict[str, bool]) -> Sheet:
        """Row 1 names none of the columns: one problem saying where the header must be, and
        where it is when a row below holds it (a title above the header, as clerks write)."""
        expected = ", ".join(columns)
        found = None
        for n, values in enumerate(rows, start=2):
            if n > HEADER_SEARCH:
                break
            if {cell_text(v) for v in values} & set(columns):
                found = n
                break
        sheet = Sheet(name, pd.DataFrame())
        title = next((t for t in first if t), "")
        if found:
            message = (f"the header must be row 1, but row {found} holds it: delete the {found - 1} row(s) above it "
                       f"(row 1 holds {title!r})")
        else:
            message = f"row 1 must be the header naming the columns ({expected}); it holds {title!r}"
        sheet.problems.append(Problem(name, 1, "", message))
        return sheet

    def close(self) -> None:
        if self._book is not None:
            self._book.close()

    def __enter__(self) -> "Workbook":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Workbook", "cell_text", "is_workbook", "SUFFIXES"]
