"""Detection over monthly stock reports (the form most facilities fill in before patient-level
dispensing reaches them): opening, received, consumed, adjustment, closing.

A report is one facility's own account of a month. Leakage shows in it the way it shows on any
balance sheet: figures that do not add up, stock that vanishes between one month's closing and the
next month's opening, more consumed than there was, stock written off in bulk with no reason
given, consumption far above what the facility and its peers usually use, months not accounted
for, and stock idle next door during a stockout. Each detector reads the current revision of every
report (a frame built once per scan); scores say how rare a finding is in this data and among the
same month's peers.

Evidence. Flag evidence in the flag tables names ledger rows (a foreign key to the ledger), and a
report is not a ledger row. So a report hit names its reports in ``details["reports"]`` as stable
references, ``report:FACILITY/ITEM/YYYY-MM`` (with ``#rN`` for a resubmitted revision N). Findings
about one facility and item in nearby months are one event (see ``surprise``): its subject is
``facility_item`` with subject id ``FACILITY:ITEM:YYYY-MM`` of its first month (``facility`` and
``FACILITY:YYYY-MM`` for missing and all-zero reports), its case the first report's reference, and
several detectors' findings about it merge into one flag.

Quantities are read as the integer thousandths they are stored as, so balances are checked
exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import exists, select, text
from sqlalchemy.orm import Session

from anomaly.hits import Hit
from anomaly.reports import balance, coverage, usage
from anomaly.reports.surprise import Finding, to_hits
from stock.models import StockReport
from stock.settings import Detection

NAMES = ("report_arithmetic", "report_carryover", "report_overdraw", "report_adjustment", "report_consumption",
         "report_missing", "report_zero", "report_stockout")

_SQL = """
SELECT r.id, f.code AS facility_code, f.kind AS facility_kind, f.region, i.code AS item_code, i.name AS item_name,
       i.unit, r.period, r.revision, r.opening, r.received, r.consumed, r.adjustment, r.closing,
       r.stockout_days
FROM stock_report r
JOIN facility f ON f.id = r.facility_id
JOIN item i ON i.id = r.item_id
ORDER BY f.code, i.code, r.period, r.revision
"""


def any_reports(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(StockReport.id.is_not(None)))))


def changed_since(session: Session, when) -> bool:
    """Whether any report was imported after ``when`` (the previous scan's start)."""
    if when is None:
        return any_reports(session)
    return bool(session.scalar(select(exists().where(StockReport.imported_at > when))))


def load(session: Session) -> pd.DataFrame:
    """The current revision of every report, one row per facility, item and period, in order.

    Quantities are in whole units as floats for reasons and scores, and also as exact integer
    thousandths (``*_m``) for the balance checks."""
    result = session.connection().execute(text(_SQL))
    r = pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))
    if r.empty:
        return r
    r = r.drop_duplicates(["facility_code", "item_code", "period"], keep="last").reset_index(drop=True)
    for col in ("opening", "received", "consumed", "adjustment", "closing"):
        milli = pd.to_numeric(r[col], errors="coerce")
        if col == "adjustment":
            r["adjustment_reported"] = milli.notna()
            milli = milli.fillna(0)
        r[f"{col}_m"] = milli.astype("int64")
        r[col] = r[f"{col}_m"] / 1000.0
    r["ref"] = ("report:" + r["facility_code"] + "/" + r["item_code"] + "/" + r["period"]
                + np.where(r["revision"] > 1, "#r" + r["revision"].astype(str), ""))
    r["month_no"] = r["period"].str[:4].astype("int64") * 12 + r["period"].str[5:7].astype("int64")
    return r


def detect(reports: pd.DataFrame, settings: Detection, only: list[str] | None = None) -> list[Hit]:
    """Every report detector (or those named in ``only``) over the frame from ``load``."""
    if reports.empty:
        return []
    wanted = [n for n in NAMES if only is None or n in only]
    runs = coverage.zero_runs(reports)
    # Months zeroed without counting are not reports: the other detectors read around them.
    counted = reports.drop(index=coverage.placeholders(runs))
    moves = balance.net(counted)
    run = {
        "report_arithmetic": lambda: balance.arithmetic(counted, moves),
        "report_carryover": lambda: balance.carryover(counted, moves),
        "report_overdraw": lambda: balance.overdraw(counted, moves),
        "report_adjustment": lambda: usage.adjustment(counted, moves),
        "report_consumption": lambda: usage.consumption(counted, settings),
        "report_missing": lambda: coverage.missing(reports),
        "report_zero": lambda: coverage.zeros(reports, runs),
        "report_stockout": lambda: coverage.stockout(counted),
    }
    findings: list[Finding] = []
    for name in wanted:
        findings.extend(run[name]())
    return to_hits(findings)


def scan_hits(session: Session, settings: Detection, only: list[str] | None = None) -> list[Hit]:
    """What the scan calls: load the reports and run the detectors."""
    if only is not None and not set(only) & set(NAMES):
        return []
    return detect(load(session), settings, only)


__all__ = ["NAMES", "load", "detect", "scan_hits", "any_reports", "changed_since"]
