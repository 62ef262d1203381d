"""Detection over monthly stock reports (the form most facilities fill in before patient-level
dispensing reaches them): opening, received, consumed, adjustment, closing.

A report is one facility's own account of a month. Leakage shows in it the way it shows on any
balance sheet: figures that do not add up, stock that vanishes between one month's closing and the
next month's opening, more consumed than there was, stock written off in bulk with no reason
given, and consumption far above what the facility and its peers usually use. Each detector reads
the current revision of every report (a frame built once per scan) and returns hits.

Evidence. Flag evidence in the flag tables names ledger rows (a foreign key to the ledger), and a
report is not a ledger row. So a report hit names its reports in ``details["reports"]`` as stable
references, ``report:FACILITY/ITEM/YYYY-MM`` (with ``#rN`` for a resubmitted revision N), its
subject is ``facility_item`` with subject id ``FACILITY:ITEM:YYYY-MM`` (the month the finding is
about), and its case is the reference of that month's report. Findings of several detectors about
the same report merge into one flag; a resubmitted report with other figures is new evidence and
is judged as a new case, while the verdicts on the old figures stay.

Quantities are read as the integer thousandths they are stored as, so balances are checked
exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import exists, select, text
from sqlalchemy.orm import Session

from anomaly.detectors.consumption import robust_z
from anomaly.hits import Hit, amount, qty, squash
from stock.models import StockReport
from stock.settings import Detection

NAMES = ("report_arithmetic", "report_carryover", "report_overdraw", "report_adjustment", "report_consumption")

ADJUSTMENT_MIN_UNITS = 10
"""A negative adjustment smaller than this is too small to question."""
ADJUSTMENT_RATIO = 1.0
"""A negative adjustment is large when it exceeds this multiple of the month's consumption and
of the facility's median monthly consumption of the item."""
CONSUMPTION_MIN_UNITS = 20
"""A month consuming less than this is too small to judge against history."""
CONSUMPTION_MIN_RATIO = 2.0
"""A flagged month consumes at least this multiple of the facility's own median."""

_KINDS = {"hospital": "hospitals", "health_center": "health centres", "pharmacy": "pharmacies",
          "warehouse": "warehouses"}

_SQL = """
SELECT r.id, f.code AS facility_code, f.kind AS facility_kind, i.code AS item_code, i.name AS item_name,
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
    hits: list[Hit] = []
    for name in NAMES:
        if only is None or name in only:
            hits.extend(_DETECTORS[name](reports, settings))
    return hits


def scan_hits(session: Session, settings: Detection, only: list[str] | None = None) -> list[Hit]:
    """What the scan calls: load the reports and run the detectors."""
    if only is not None and not set(only) & set(NAMES):
        return []
    return detect(load(session), settings, only)


def _hit(name: str, row, score: float, reason: str, refs: list[str], details: dict) -> Hit:
    return Hit(name, "facility_item", f"{row.facility_code}:{row.item_code}:{row.period}", row.facility_code,
               (), float(score), reason, {"reports": refs, "period": row.period, **details}, case=row.ref)


def _of(row) -> str:
    return f"{row.item_name} ({row.item_code})"


def arithmetic(r: pd.DataFrame, settings: Detection) -> list[Hit]:
    """Closing differs from opening + received - consumed + adjustment.

    Less stock at the close than the figures leave means stock went out unrecorded (the pattern of
    leakage) and weighs more; more stock means an unrecorded receipt or a miscount."""
    expected = r["opening_m"] + r["received_m"] - r["consumed_m"] + r["adjustment_m"]
    diff = r["closing_m"] - expected
    bad = r[diff != 0].assign(expected=expected[diff != 0] / 1000.0, diff=diff[diff != 0] / 1000.0)
    hits = []
    for row in bad.itertuples(index=False):
        base = max(row.opening + row.received, row.consumed, 1.0)
        share = abs(row.diff) / base
        if row.diff < 0:
            score = squash(share, half=0.1, floor=0.5, ceiling=0.95)
            gap = f"{amount(-row.diff, row.unit)} fewer than the figures leave"
        else:
            score = squash(share, half=0.2, floor=0.3, ceiling=0.7)
            gap = f"{amount(row.diff, row.unit)} more than the figures leave"
        reason = (f"{row.facility_code} reported a closing stock of {amount(row.closing, row.unit)} of {_of(row)} "
                  f"for {row.period}, but opening {qty(row.opening)} + received {qty(row.received)} "
                  f"- consumed {qty(row.consumed)} + adjustment {qty(row.adjustment)} = {qty(row.expected)}: "
                  f"{gap} ({share:.0%} of the stock handled).")
        hits.append(_hit("report_arithmetic", row, score, reason, [row.ref],
                         {"expected_closing": row.expected, "closing": row.closing, "difference": row.diff}))
    return hits


def carryover(r: pd.DataFrame, settings: Detection) -> list[Hit]:
    """A month's opening differs from the previous month's closing (consecutive months only).

    An opening below the last closing means stock disappeared between two reports, outside any
    month's figures. When the same month's positive adjustment puts the missing stock back (the
    opening written as 0 and the stock re-entered as an adjustment, a common bookkeeping habit),
    only what it does not put back counts towards the score."""
    same = ((r["facility_code"] == r["facility_code"].shift()) & (r["item_code"] == r["item_code"].shift())
            & (r["month_no"] == r["month_no"].shift() + 1))
    prev_closing_m = r["closing_m"].shift()
    gap_m = r["opening_m"] - prev_closing_m
    mask = same & (gap_m != 0)
    bad = r[mask].assign(prev_closing=prev_closing_m[mask] / 1000.0, gap=gap_m[mask] / 1000.0,
                         prev_ref=r["ref"].shift()[mask], prev_period=r["period"].shift()[mask])
    hits = []
    for row in bad.itertuples(index=False):
        base = max(row.prev_closing, row.opening, 1.0)
        restored = min(-row.gap, max(row.adjustment, 0.0)) if row.gap < 0 else 0.0
        if row.gap < 0 and restored < -row.gap:
            score = squash((-row.gap - restored) / base, half=0.15, floor=0.5, ceiling=0.9)
        elif row.gap < 0:
            score = 0.3  # all put back: the figures disagree, the stock does not
        else:
            score = squash(abs(row.gap) / base, half=0.3, floor=0.3, ceiling=0.65)
        if row.gap < 0:
            what = f"{amount(-row.gap, row.unit)} disappeared between the two reports"
            if restored:
                left = -row.gap - restored
                what += (f"; a positive adjustment of {qty(row.adjustment)} in {row.period} puts "
                         + (f"back all but {qty(left)}" if left else "it all back"))
        else:
            what = f"{amount(row.gap, row.unit)} appeared between the two reports"
        reason = (f"{row.facility_code} closed {row.prev_period} with {amount(row.prev_closing, row.unit)} of "
                  f"{_of(row)} but opened {row.period} with {qty(row.opening)}: {what}.")
        hits.append(_hit("report_carryover", row, score, reason, [row.prev_ref, row.ref],
                         {"previous_closing": row.prev_closing, "opening": row.opening, "gap": row.gap,
                          "restored_by_adjustment": restored}))
    return hits


def overdraw(r: pd.DataFrame, settings: Detection) -> list[Hit]:
    """Consumed more than was available (opening + received + a positive adjustment).

    A month whose consumption exceeds opening plus receipts and is made possible only by a positive
    adjustment is also named, with a lower score: a paper adjustment that covers consumption of
    stock the facility never received is how a balanced report can hide a diversion, though stock
    borrowed from a neighbour looks the same."""
    stocked_m = r["opening_m"] + r["received_m"]
    available_m = stocked_m + r["adjustment_m"].clip(lower=0)
    over = r["consumed_m"] > available_m
    covered = ~over & (r["consumed_m"] > stocked_m) & (r["adjustment_m"] > 0)
    hits = []
    for row, is_over in [*((x, True) for x in r[over].itertuples(index=False)),
                         *((x, False) for x in r[covered].itertuples(index=False))]:
        stocked = row.opening + row.received
        available = stocked + max(row.adjustment, 0.0)
        if is_over:
            excess = row.consumed - available
            score = squash(excess / max(available, 1.0), half=0.25, floor=0.5, ceiling=0.95)
            reason = (f"{row.facility_code} reported consuming {amount(row.consumed, row.unit)} of {_of(row)} in "
                      f"{row.period} with only {qty(available)} available (opening {qty(row.opening)} + received "
                      f"{qty(row.received)}{f' + adjustment {qty(row.adjustment)}' if row.adjustment > 0 else ''}): "
                      f"{qty(excess)} more than there was.")
            details = {"available": available, "consumed": row.consumed, "excess": excess}
        else:
            excess = row.consumed - stocked
            score = squash(excess / max(stocked, 1.0), half=1.0, floor=0.3, ceiling=0.6)
            reason = (f"{row.facility_code} reported consuming {amount(row.consumed, row.unit)} of {_of(row)} in "
                      f"{row.period} with opening {qty(row.opening)} + received {qty(row.received)} = "
                      f"{qty(stocked)}; a positive adjustment of {qty(row.adjustment)} covers the "
                      f"{qty(excess)} consumed beyond that.")
            details = {"opening_plus_received": stocked, "consumed": row.consumed, "adjustment": row.adjustment,
                       "covered_by_adjustment": excess}
        hits.append(_hit("report_overdraw", row, score, reason, [row.ref], details))
    return hits


def _median_consumption(r: pd.DataFrame) -> pd.Series:
    return r.groupby(["facility_code", "item_code"])["consumed"].transform("median")


def adjustment(r: pd.DataFrame, settings: Detection) -> list[Hit]:
    """A negative adjustment (stock written off; the form gives no reason) larger than what the
    facility consumes in a month: both this month's consumption and its usual (median) month."""
    median = _median_consumption(r)
    loss = -r["adjustment"].clip(upper=0)
    reference = np.maximum(r["consumed"], median)
    mask = (loss >= ADJUSTMENT_MIN_UNITS) & (loss > ADJUSTMENT_RATIO * reference)
    bad = r[mask].assign(loss=loss[mask], median=median[mask], reference=reference[mask])
    hits = []
    for row in bad.itertuples(index=False):
        times = row.loss / max(row.reference, 1.0)
        score = squash(times - ADJUSTMENT_RATIO, half=2.0, floor=0.4, ceiling=0.85)
        stock = row.opening + row.received
        share = f", {row.loss / stock:.0%} of the {qty(stock)} it held" if stock > 0 else ""
        reason = (f"{row.facility_code} adjusted {_of(row)} down by {amount(row.loss, row.unit)} in {row.period}"
                  f"{share}, against {qty(row.consumed)} consumed that month and a median of "
                  f"{qty(round(row.median, 1))} a month ({'no use to compare with' if row.reference == 0 else f'{times:.1f}x'}); "
                  f"the report gives no reason.")
        hits.append(_hit("report_adjustment", row, score, reason, [row.ref],
                         {"adjustment": -row.loss, "consumed": row.consumed, "median_consumed": row.median}))
    return hits


def consumption(r: pd.DataFrame, settings: Detection) -> list[Hit]:
    """A month's consumption far above the facility's own history and what its peers did that month.

    Own history: the modified z-score, 0.6745·(x − median)/MAD, of the month's consumption among
    all the facility's months of the item (MAD zero: the mean absolute deviation ×1.253314, as in
    the ledger's consumption detector; all months equal: no outlier). Peers: facilities are of very
    different sizes, so they are compared by how far each one's month is above its own median —
    the same z-score of that ratio among facilities of the same kind reporting the item that
    month. A rise that every peer shares (a campaign, a season, a national resupply) is not high
    against them. A month is flagged when it is high in each comparison it has data for (with
    both: each above half of ``mad_threshold`` and their geometric mean above all of it), at least
    CONSUMPTION_MIN_RATIO times its own median and CONSUMPTION_MIN_UNITS units.
    """
    thr = settings.mad_threshold
    r = r.copy()
    own = robust_z(r["consumed"], r, ["facility_code", "item_code"])
    r["own_median"], r["own_z"], r["own_n"] = own["median"], own["z"], own["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        r["relative"] = np.where(r["own_median"] > 0, r["consumed"] / r["own_median"], np.nan)
    rel = r[r["relative"].notna()]
    peer = robust_z(rel["relative"], rel, ["facility_kind", "item_code", "period"])
    r["peer_median"] = peer["median"].reindex(r.index)
    r["peer_z"] = peer["z"].reindex(r.index)
    r["peer_n"] = peer["n"].reindex(r.index).fillna(0)
    own_ok = r["own_n"] - 1 >= settings.min_history_months
    peer_ok = (r["peer_n"] - 1 >= settings.min_peers) & r["relative"].notna()
    own_z, peer_z = r["own_z"].clip(lower=0), r["peer_z"].fillna(0).clip(lower=0)
    both = own_ok & peer_ok
    z = np.where(both, np.sqrt(own_z * peer_z), np.where(own_ok, own_z, 0.0))
    each = np.where(both, (own_z > thr / 2) & (peer_z > thr / 2), True)
    high = (own_ok & (z > thr) & each & (r["consumed"] >= CONSUMPTION_MIN_UNITS)
            & (r["consumed"] >= CONSUMPTION_MIN_RATIO * r["own_median"]))
    r["z"] = z
    hits = []
    for row in r[high].itertuples(index=False):
        score = squash(min(row.z, 4 * thr) - thr, half=thr, floor=0.5, ceiling=0.85)
        parts = [f"its own median of {qty(round(row.own_median, 1))} over {row.own_n:.0f} months "
                 f"(z={row.own_z:.1f})"]
        details = {"consumed": row.consumed, "own_median": row.own_median, "own_z": round(float(row.own_z), 2),
                   "history_months": int(row.own_n) - 1}
        if row.peer_n - 1 >= settings.min_peers and not np.isnan(row.relative):
            parts.append(f"{row.relative:.1f}x its median where {row.peer_n - 1:.0f} other "
                         f"{_KINDS.get(row.facility_kind, row.facility_kind)} were at a median "
                         f"{row.peer_median:.1f}x theirs (z={row.peer_z:.1f})")
            details.update(relative=round(float(row.relative), 3), peer_median=round(float(row.peer_median), 3),
                           peer_z=round(float(row.peer_z), 2), peers=int(row.peer_n) - 1)
        reason = (f"{row.facility_code} reported consuming {amount(row.consumed, row.unit)} of {_of(row)} in "
                  f"{row.period}, against {' and '.join(parts)}.")
        hits.append(_hit("report_consumption", row, score, reason, [row.ref], details))
    return hits


_DETECTORS = {"report_arithmetic": arithmetic, "report_carryover": carryover, "report_overdraw": overdraw,
              "report_adjustment": adjustment, "report_consumption": consumption}

__all__ = ["NAMES", "load", "detect", "scan_hits", "any_reports", "changed_since"]
