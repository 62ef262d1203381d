"""Monthly stock reports (``stock_reports.csv``): read, validate and store them as reported.

Most facilities report stock once a month on a form: opening balance, received, consumed,
adjustment, closing balance, stockout days, quantity ordered. Import keeps those figures exactly as
the facility wrote them. It refuses only what cannot be a report (an unknown facility or item, a
period that is not a month, a figure that is not a number, a negative stock or receipt, more
stockout days than a month has); figures that do not add up are stored, because detection reads
them as evidence.

A re-import of the same figures changes nothing. A resubmission of a period with other figures
is stored as a new revision beside the earlier ones, which are kept: nothing a facility reported
is overwritten, and the highest revision is the current report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from stock.csvread import ImportFailed, Sheet, check_length, parse_ints, parse_quantities, read_sheet
from stock.models import Facility, Item, StockReport
from stock.quantities import DIVISIBLE_UNITS, from_milli

FILE = "stock_reports.csv"
COLUMNS = {"facility_code": True, "item_code": True, "period": True, "opening": True, "received": True,
           "consumed": True, "adjustment": False, "closing": True, "stockout_days": False, "ordered": False}
QUANTITIES = ("opening", "received", "consumed", "adjustment", "closing", "ordered")
SIGNED = ("adjustment",)
CONTENT = (*QUANTITIES, "stockout_days")
"""What makes a resubmitted report the same as the stored one."""
PERIOD_PATTERN = r"\d{4}-(?:0[1-9]|1[0-2])"


@dataclass
class ReportImport:
    """What an import did with stock_reports.csv."""

    added: int = 0
    revised: int = 0
    unchanged: int = 0

    @property
    def rows(self) -> int:
        return self.added + self.revised + self.unchanged

    def __str__(self) -> str:
        return (f"{self.added} stock reports added, {self.revised} revised, "
                f"{self.unchanged} already present")


def import_folder(session: Session, folder: Path, *, now: datetime | None = None) -> ReportImport:
    """Import ``folder/stock_reports.csv`` if it is there, in the caller's transaction.

    Facilities and items must already be stored (the importer upserts the folder's master data
    first). Raises ImportFailed naming every problem as file:line: column: message; the caller
    rolls back and nothing is stored.
    """
    path = Path(folder) / FILE
    if not path.exists():
        return ReportImport()
    return import_sheet(session, read_sheet(path, COLUMNS), now=now or datetime.now(timezone.utc))


def import_sheet(session: Session, sheet: Sheet, *, now: datetime) -> ReportImport:
    if sheet.problems:
        raise ImportFailed(sheet.problems)
    values = _validate(session, sheet)
    if sheet.problems:
        raise ImportFailed(sheet.problems)
    return _store(session, sheet, values, now)


def _validate(session: Session, sheet: Sheet) -> dict:
    sheet.require(*[c for c, required in COLUMNS.items() if required])
    facilities = dict(session.execute(select(Facility.code, Facility.id)).all())
    items = {code: (iid, unit) for code, iid, unit in session.execute(select(Item.code, Item.id, Item.unit))}
    fac, item, period = sheet.col("facility_code"), sheet.col("item_code"), sheet.col("period")
    sheet.report((fac != "") & ~fac.isin(facilities.keys()), "facility_code",
                 lambda i: f"unknown facility {fac.iat[i]!r}")
    sheet.report((item != "") & ~item.isin(items.keys()), "item_code",
                 lambda i: f"unknown item {item.iat[i]!r}")
    sheet.report((period != "") & ~period.str.fullmatch(PERIOD_PATTERN), "period",
                 lambda i: f"{period.iat[i]!r} is not a month (YYYY-MM)")
    check_length(sheet, "period", 7)

    divisible = {code for code, (_id, unit) in items.items() if unit.strip().lower() in DIVISIBLE_UNITS}
    whole_only = item.isin(items.keys()) & ~item.isin(divisible)
    values: dict = {}
    for column in QUANTITIES:
        milli, present = parse_quantities(sheet, column)
        if column not in SIGNED:
            sheet.report(present & (milli < 0), column, lambda i, c=column: f"{sheet.col(c).iat[i]} is negative")
        sheet.report(present & (milli % 1000 != 0) & whole_only, column,
                     lambda i, c=column: f"{sheet.col(c).iat[i]} is not a whole number of "
                                         f"{items[item.iat[i]][1]}s")
        values[column] = (milli, present)
    days = parse_ints(sheet, "stockout_days", 0, 31)
    values["stockout_days"] = days

    keyed = (fac + "\x1f" + item + "\x1f" + period)
    dup = keyed.duplicated(keep="first") & (fac != "") & (item != "") & (period != "")
    if dup.any():
        first: dict[str, int] = {}
        for i, k in enumerate(keyed):
            first.setdefault(k, i)
        sheet.report(dup, "period", lambda i: f"{fac.iat[i]} reports {item.iat[i]} for {period.iat[i]} again "
                                              f"(first on line {first[keyed.iat[i]] + 2})")
    values["facilities"], values["items"] = facilities, items
    return values


def _stored(session: Session, keys: set[tuple[int, int, str]]) -> dict[tuple[int, int, str], tuple[int, tuple]]:
    """Current revision and content of each stored report among ``keys``."""
    if not keys:
        return {}
    periods = sorted({p for _f, _i, p in keys})
    latest = (select(StockReport.facility_id, StockReport.item_id, StockReport.period,
                     func.max(StockReport.revision).label("rev"))
              .where(StockReport.period.between(periods[0], periods[-1]))
              .group_by(StockReport.facility_id, StockReport.item_id, StockReport.period)).subquery()
    rows = session.execute(
        select(StockReport.facility_id, StockReport.item_id, StockReport.period, StockReport.revision,
               *(getattr(StockReport, c) for c in CONTENT))
        .join(latest, (latest.c.facility_id == StockReport.facility_id) & (latest.c.item_id == StockReport.item_id)
              & (latest.c.period == StockReport.period) & (latest.c.rev == StockReport.revision)))
    out = {}
    for facility_id, item_id, period, revision, *content in rows:
        key = (facility_id, item_id, period)
        if key in keys:
            out[key] = (revision, tuple(content))
    return out


def _store(session: Session, sheet: Sheet, values: dict, now: datetime) -> ReportImport:
    facilities, items = values["facilities"], values["items"]
    fac = sheet.col("facility_code").tolist()
    item = sheet.col("item_code").tolist()
    period = sheet.col("period").tolist()
    n = len(fac)
    columns: dict[str, list] = {}
    for column in QUANTITIES:
        milli, present = values[column]
        columns[column] = [from_milli(int(m)) if p else None for m, p in zip(milli.tolist(), present.tolist())]
    days = values["stockout_days"]
    columns["stockout_days"] = [None if np.isnan(d) else int(d) for d in days.to_numpy(dtype="float64")]

    keys = [(facilities[fac[i]], items[item[i]][0], period[i]) for i in range(n)]
    stored = _stored(session, set(keys))
    result = ReportImport()
    rows = []
    for i, key in enumerate(keys):
        content = tuple(columns[c][i] for c in CONTENT)
        revision = 1
        if key in stored:
            current, old = stored[key]
            if _same(old, content):
                result.unchanged += 1
                continue
            revision = current + 1
            result.revised += 1
        else:
            result.added += 1
        rows.append({"facility_id": key[0], "item_id": key[1], "period": key[2], "revision": revision,
                     **{c: columns[c][i] for c in CONTENT}, "imported_at": now})
    for start in range(0, len(rows), 5000):
        session.execute(insert(StockReport.__table__), rows[start:start + 5000])
    session.flush()
    return result


def _same(a: tuple, b: tuple) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and Decimal(x) == Decimal(y))
               for x, y in zip(a, b))


__all__ = ["import_folder", "import_sheet", "ReportImport", "FILE", "COLUMNS"]
