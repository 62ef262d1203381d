"""Reading contract CSV files with every problem reported as ``file:line: column: message``.

Files are read with pandas as text (nothing guessed, empty cell = no value) and checked column by
column with vectorised masks, so a million rows cost seconds and every bad row is named at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


class ImportFailed(Exception):
    """The data set has problems; nothing was stored."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__(f"{len(problems)} problem(s); nothing was imported")


@dataclass
class Sheet:
    """One CSV file read as text, with the problems found in it."""

    name: str
    frame: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    def lines(self, mask) -> np.ndarray:
        """1-based file line numbers (the header is line 1) of the rows selected by ``mask``."""
        return np.flatnonzero(np.asarray(mask)) + 2

    def report(self, mask, column: str, message, limit: int | None = None) -> None:
        """Add a problem for each row in ``mask``; ``message`` may be a function of the row index."""
        idx = np.flatnonzero(np.asarray(mask))
        for i in idx if limit is None else idx[:limit]:
            text = message(i) if callable(message) else message
            self.problems.append(Problem(self.name, int(i) + 2, column, text))

    def report_row(self, i: int, column: str, message: str) -> None:
        """A problem at row ``i`` (0-based, as in the frame)."""
        self.problems.append(Problem(self.name, int(i) + 2, column, message))

    def col(self, name: str) -> pd.Series:
        return self.frame[name] if name in self.frame.columns else pd.Series("", index=self.frame.index)

    def require(self, *columns: str) -> None:
        for c in columns:
            self.report(self.col(c) == "", c, "required value is missing")


def read_sheet(path: Path, columns: dict[str, bool]) -> Sheet:
    """Read ``path``; ``columns`` maps each allowed column to whether it is required.

    An unknown column is a problem (a typo must not silently drop data), as is a missing required
    one. Cells are stripped of surrounding white space.
    """
    name = path.name
    try:
        try:
            frame = pd.read_csv(path, dtype="str", keep_default_na=False, engine="pyarrow")
        except (pa.ArrowInvalid, ValueError):
            # Arrow's messages do not give line numbers; the C parser's do.
            frame = pd.read_csv(path, dtype="str", keep_default_na=False, na_filter=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        sheet = Sheet(name, pd.DataFrame())
        sheet.problems.append(Problem(name, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        return sheet
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        sheet = Sheet(name, pd.DataFrame())
        sheet.problems.append(Problem(name, 0, "", f"not a readable CSV file: {exc}"))
        return sheet
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    sheet = check_header(name, frame, columns)
    if sheet.problems:
        return sheet
    for c in frame.columns:
        frame[c] = frame[c].str.strip()
    return sheet


def check_header(name: str, frame: pd.DataFrame, columns: dict[str, bool]) -> Sheet:
    """The header rules shared by every reader (CSV file or workbook sheet): an unknown column,
    a column named twice and a missing required column are problems on line 1."""
    sheet = Sheet(name, frame)
    seen = set()
    for c in frame.columns:
        if c in seen:
            sheet.problems.append(Problem(name, 1, c, "column appears twice in the header"))
        seen.add(c)
        if c not in columns:
            sheet.problems.append(Problem(name, 1, c, f"unknown column (allowed: {', '.join(columns)})"))
    for c, required in columns.items():
        if required and c not in frame.columns:
            sheet.problems.append(Problem(name, 1, c, "required column is missing from the header"))
    return sheet


_TS_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
QTY_PATTERN = r"^-?\d{1,12}(?:\.\d{1,3})?$"


def parse_timestamps(sheet: Sheet, column: str) -> np.ndarray:
    """UTC microseconds since the epoch (int64; 0 where missing or bad). A value without an
    offset or not ISO 8601 is a problem. Arrow parses a clean column in one vectorised cast; only
    a column with a bad value takes the slower path that finds and names each one."""
    s = sheet.col(column)
    present = (s != "").to_numpy()
    try:
        arr = pa.Array.from_pandas(s.where(s != "", None))
        us = arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return us.fill_null(0).to_numpy(zero_copy_only=False).astype("int64")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    has_offset = s.str.contains(_TS_OFFSET, regex=True).to_numpy()
    sheet.report(present & ~has_offset, column,
                 lambda i: f"timestamp {s.iat[i]!r} has no zone offset (write e.g. 2026-03-01T09:15:00+02:00)")
    ok = present & has_offset
    parsed = pd.to_datetime(s.where(ok, None), utc=True, format="ISO8601", errors="coerce")
    sheet.report(ok & parsed.isna().to_numpy(), column, lambda i: f"{s.iat[i]!r} is not an ISO 8601 timestamp")
    return parsed.to_numpy(dtype="datetime64[us]").astype("int64").clip(min=0) * parsed.notna().to_numpy()


def parse_dates(sheet: Sheet, column: str) -> pd.Series:
    """Dates written exactly as the contract says (2026-03-01); others are problems."""
    s = sheet.col(column)
    present = s != ""
    shaped = s.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    parsed = pd.to_datetime(s.where(present & shaped, None), format="%Y-%m-%d", errors="coerce")
    sheet.report(present & (~shaped | parsed.isna()), column, lambda i: f"{s.iat[i]!r} is not a date (YYYY-MM-DD)")
    return parsed


def parse_quantities(sheet: Sheet, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Quantities as whole thousandths (int64) and a mask of the cells that hold a well-formed
    number; malformed values are problems (reported here, once) and read as 0."""
    s = sheet.col(column)
    present = s != ""
    ok = s.str.match(QTY_PATTERN)
    sheet.report(present & ~ok, column, lambda i: f"{s.iat[i]!r} is not a number")
    values = _floats(s.where(present & ok, "0"))
    return np.rint(values * 1000).astype("int64"), (present & ok).to_numpy()


def _floats(s: pd.Series) -> np.ndarray:
    """Text cells already checked to be decimal numbers (or missing: NaN) as float64, parsed by
    one Arrow cast: pd.to_numeric goes through Python objects for text columns."""
    arr = pa.array(s, type=pa.large_string(), from_pandas=True)
    return arr.cast(pa.float64()).to_numpy(zero_copy_only=False)


def parse_ints(sheet: Sheet, column: str, low: int, high: int) -> pd.Series:
    s = sheet.col(column)
    present = s != ""
    ok = s.str.fullmatch(r"-?\d{1,9}")
    sheet.report(present & ~ok, column, lambda i: f"{s.iat[i]!r} is not a whole number")
    values = pd.Series(_floats(s.where(present & ok, None)), index=s.index)
    sheet.report(present & ok & ((values < low) | (values > high)), column,
                 lambda i: f"{s.iat[i]} is outside {low}..{high}")
    return values


def check_domain(sheet: Sheet, column: str, allowed: tuple[str, ...], *, optional: bool = False) -> None:
    s = sheet.col(column)
    bad = ~s.isin(allowed)
    if optional:
        bad &= s != ""
    sheet.report(bad, column, lambda i: f"{s.iat[i]!r} is not one of {', '.join(allowed)}")


def check_unique(sheet: Sheet, column: str) -> None:
    s = sheet.col(column)
    dup = s.duplicated(keep="first") & (s != "")
    if not dup.any():
        return
    first: dict[str, int] = {}
    for i, v in enumerate(s):
        first.setdefault(v, i)
    sheet.report(dup, column, lambda i: f"{s.iat[i]!r} already appears on line {first[s.iat[i]] + 2}")


def check_characters(sheet: Sheet, column: str, refused: tuple[str, ...], why) -> None:
    """Report each value holding one of the ``refused`` characters; ``why(value)`` says which.

    A column's text is first searched as one block of bytes, so a clean column (the usual case)
    costs a scan at memory speed instead of a search per value and character."""
    s = sheet.col(column)
    if not _may_hold(s, refused):
        return
    mask = np.zeros(len(s), dtype=bool)
    for ch in refused:
        mask |= s.str.contains(ch, regex=False).fillna(False).to_numpy(dtype=bool)
    sheet.report(mask, column, lambda i: why(s.iat[i]))


def _may_hold(s: pd.Series, chars: tuple[str, ...]) -> bool:
    """False only when no value of ``s`` holds any of ``chars``."""
    try:
        arr = pa.array(s, from_pandas=True)  # no copy for Arrow-backed text
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return True
    needles = [c.encode("utf-8") for c in chars]
    for chunk in (arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]):
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return True
        data = chunk.buffers()[2]
        if data is not None:
            block = data.to_pybytes()
            if any(n in block for n in needles):
                return True
    return False


def check_length(sheet: Sheet, column: str, limit: int) -> None:
    s = sheet.col(column)
    sheet.report(s.str.len() > limit, column, f"longer than {limit} characters")
