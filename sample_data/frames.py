"""Small column tables and the calendar that the generator's stages pass to each other.

The stages exchange plain numpy columns rather than pandas frames: the volumes are large (a million
dispensings at the biggest scale), everything is integer-coded until the final CSV, and
concatenating or indexing a handful of aligned arrays is both faster and more explicit.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

DAY = 86_400
HOUR = 3_600
GO_LIVE_DAYS = 7
"""Days at the start of the period during which warehouses stock the facilities before the first
patient is served; every ledger row falls inside the requested period."""


class Columns:
    """Aligned numpy columns with concatenation and row selection."""

    def __init__(self, **cols: np.ndarray):
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: { {k: len(v) for k, v in cols.items()} }")
        self.cols = {k: np.asarray(v) for k, v in cols.items()}

    def __len__(self) -> int:
        return len(next(iter(self.cols.values()))) if self.cols else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self.cols[name] = np.asarray(values)

    def take(self, index) -> "Columns":
        return Columns(**{k: v[index] for k, v in self.cols.items()})

    @staticmethod
    def concat(parts: list["Columns"]) -> "Columns":
        parts = [p for p in parts if p is not None]
        names = list(parts[0].cols)
        return Columns(**{k: np.concatenate([p.cols[k] for p in parts]) for k in names})


# Static ledger events: everything whose timing is decided before stock is simulated.
DISPENSE, LOSS, WRITEOFF, REVERSAL, ADJUST, KEYED_TEN = 0, 1, 2, 3, 4, 5
"""``KEYED_TEN`` is a dispensing whose quantity was keyed ten times too large (then corrected)."""
DISPENSE_KINDS = (DISPENSE, KEYED_TEN)
REASONS = ("", "expired", "damaged", "correction", "recalled", "emergency")
NO_REASON, R_EXPIRED, R_DAMAGED, R_CORRECTION, R_RECALLED, R_EMERGENCY = 0, 1, 2, 3, 4, 5


def events(n: int, **given: np.ndarray) -> Columns:
    """An event table of ``n`` rows with defaults for the columns not given."""
    cols = {
        "t": np.zeros(n, np.int64), "fac": np.zeros(n, np.int64), "item": np.zeros(n, np.int64),
        "qty": np.zeros(n, np.int64), "kind": np.zeros(n, np.int64), "card": np.full(n, -1, np.int64),
        "rx": np.full(n, -1, np.int64), "user": np.zeros(n, np.int64), "inc": np.full(n, -1, np.int64),
        "strict": np.zeros(n, bool), "ref": np.full(n, -1, np.int64), "reason": np.zeros(n, np.int64),
    }
    for k, v in given.items():
        if k not in cols:
            raise KeyError(k)
        cols[k] = np.broadcast_to(np.asarray(v, dtype=cols[k].dtype), (n,)).copy()
    return Columns(**cols)


def prescriptions(n: int, **given: np.ndarray) -> Columns:
    cols = {
        "card": np.zeros(n, np.int64), "fac": np.zeros(n, np.int64), "prescriber": np.zeros(n, np.int64),
        "item": np.zeros(n, np.int64), "qty": np.zeros(n, np.int64), "days": np.zeros(n, np.int64),
        "issued": np.zeros(n, np.int64), "diag": np.full(n, "", dtype=object),
    }
    for k, v in given.items():
        cols[k] = np.broadcast_to(np.asarray(v, dtype=cols[k].dtype), (n,)).copy()
    return Columns(**cols)


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def period_ending(last_day: date, months: int) -> tuple[date, date]:
    """The first day and the day after the last of a period of ``months`` ending on ``last_day``."""
    until = last_day + timedelta(days=1)
    return add_months(until, -months), until


@dataclass
class Timeline:
    """Days are counted from ``start``; times are seconds from ``start`` at 00:00 Libya time."""

    start: date
    months: int
    until: date | None = None
    """The day after the last one, when it is not ``months`` after ``start`` (a period ending on a
    given day: see ``period_ending``)."""

    def __post_init__(self) -> None:
        self.end = self.until or add_months(self.start, self.months)
        self.n_days = (self.end - self.start).days
        days = np.arange(self.n_days)
        self.weekday = (self.start.weekday() + days) % 7
        starts = []
        d = date(self.start.year, self.start.month, 1)
        while d < self.end:
            starts.append(max((d - self.start).days, 0))
            d = add_months(d, 1)
        self.month_start = np.array(starts + [self.n_days])
        self.month_of_day = np.searchsorted(self.month_start, days, side="right") - 1
        self.day_of_year = np.array([(self.start + timedelta(int(x))).timetuple().tm_yday for x in days])

    @property
    def n_months(self) -> int:
        return len(self.month_start) - 1

    def date_of(self, day: int) -> date:
        return self.start + timedelta(days=int(day))

    def month_label(self, m: int) -> str:
        return self.date_of(self.month_start[m]).strftime("%Y-%m")
