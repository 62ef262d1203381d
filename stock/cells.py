"""Text cells that are safe to open in a spreadsheet.

Excel, LibreOffice and Google Sheets take a cell of a CSV file that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return as a formula: text typed by anyone (a reason, a lot
number, a patient's name in a source system) could then run ``=HYPERLINK(...)`` or worse on an
auditor's machine. Every export written for people passes its text cells through ``csv_text``
(a leading apostrophe, which spreadsheets show as the text itself) and writes its XLSX text cells
as strings (``xlsx_text``), never as formulas. Numbers, dates and times are written as such and
never touched: a negative quantity stays a number.

(Machine exchange files of the data contract are left as they are: they are read back by programs,
and the contract fixes their content.)
"""

from __future__ import annotations

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "\n")


def is_formula_like(text: str) -> bool:
    return text.startswith(FORMULA_LEADS)


def csv_text(text: str) -> str:
    """``text`` for a CSV cell people will open: a formula-like text gets a leading apostrophe."""
    return "'" + text if is_formula_like(text) else text


def xlsx_text(cell) -> None:
    """Make an openpyxl cell holding text a plain string cell (openpyxl takes any text starting
    with ``=`` for a formula)."""
    if isinstance(cell.value, str) and cell.data_type != "s":
        cell.data_type = "s"


__all__ = ["FORMULA_LEADS", "is_formula_like", "csv_text", "xlsx_text"]
