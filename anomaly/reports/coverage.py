"""Months a facility did not account for, and stock that sat idle next door during a stockout.

- Missing reports: a facility and item that report before and after some months but not in them.
- All-zero reports: a run of reports with every figure zero although the report just before the
  run closed with stock: the form was sent, the stock was not counted. Those months are not
  reports for the other detectors (the stock did not vanish into them and come back out of
  them). Zeros after a closing of zero are an item out of stock or not carried, and say nothing.
- Stockout beside stock: a facility closed a month with none of an item it uses (in most months)
  while another facility of its region held more than MAX_STOCK_MONTHS months of its own use,
  enough to cover at least a month of the first one's: stock to redistribute as much as a
  question to ask. Ranked among the data's stockouts, by the months of use the spare stock
  covers, then by the stockout days reported.

A facility missing, or zeroing, the same months for several items is one finding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stock.messages import code, count, join, month, msg, nmsg, num
from stock.messages import qty as quantity
from anomaly.reports.balance import _of
from anomaly.reports.surprise import Finding, period_of, rarity

MAX_STOCK_MONTHS = 3
"""Months of its own use a facility keeps at most; stock beyond it can be spared."""


def _zero(r: pd.DataFrame) -> pd.Series:
    return ((r["opening_m"] == 0) & (r["received_m"] == 0) & (r["consumed_m"] == 0) & (r["adjustment_m"] == 0)
            & (r["closing_m"] == 0))


def zero_runs(r: pd.DataFrame) -> pd.DataFrame:
    """Runs of consecutive all-zero reports right after a closing with stock: facility, item, first
    and last month, the report index of each month, and the stock just before and after."""
    zero = _zero(r)
    key_change = ((r["facility_code"] != r["facility_code"].shift()) | (r["item_code"] != r["item_code"].shift())
                  | (r["month_no"] != r["month_no"].shift() + 1))
    run_id = (key_change | (zero != zero.shift())).cumsum()
    z = r[zero].assign(run=run_id[zero])
    if z.empty:
        return pd.DataFrame(columns=["facility_code", "item_code", "first", "last", "rows", "before", "after"])
    runs = z.groupby("run").agg(facility_code=("facility_code", "first"), item_code=("item_code", "first"),
                                first=("month_no", "min"), last=("month_no", "max"),
                                rows=("month_no", lambda s: list(s.index)))
    prev = r.shift()
    nxt = r.shift(-1)
    starts = [rows[0] for rows in runs["rows"]]
    ends = [rows[-1] for rows in runs["rows"]]

    def beside(frame, idx, step, col):
        ok = ((frame.loc[idx, "facility_code"].to_numpy() == r.loc[idx, "facility_code"].to_numpy())
              & (frame.loc[idx, "item_code"].to_numpy() == r.loc[idx, "item_code"].to_numpy())
              & (frame.loc[idx, "month_no"].to_numpy() == r.loc[idx, "month_no"].to_numpy() + step))
        return np.where(ok, frame.loc[idx, col].to_numpy(dtype=float), 0.0)

    runs["before"] = beside(prev, starts, -1, "closing")
    runs["after"] = beside(nxt, ends, 1, "opening")
    return runs[runs["before"] > 0].reset_index(drop=True)


def placeholders(runs: pd.DataFrame) -> list:
    return [i for rows in runs["rows"] for i in rows]


def _facility_findings(detector: str, r: pd.DataFrame, spans: pd.DataFrame, p: pd.Series, describe) -> list[Finding]:
    """One finding per facility and span of months (first, last), listing every item in it."""
    out = []
    for (facility, first), grp in spans.groupby(["facility_code", "first"], sort=True):
        last = int(grp["last"].max())
        anchor = grp.sort_values("item_code").iloc[0]
        row = r.loc[anchor["anchor"]]
        refs = sorted(ref for refs in grp["refs"] for ref in refs)
        months = (month(period_of(first)) if first == last
                  else msg("%(first)s to %(last)s", first=month(period_of(first)), last=month(period_of(last))))
        items = [_of(r.loc[a]) for a in grp.sort_values("item_code")["anchor"]]
        reason = describe(facility, months, last - first + 1, items, grp, r)
        out.append(Finding(detector, facility, None, int(first), row.ref, period_of(first),
                           float(p.reindex(grp["anchor"]).min()), reason, refs,
                           {"first": period_of(first), "last": period_of(last), "items": sorted(grp["item_code"])}))
    return out


def _around(grp: pd.DataFrame, r: pd.DataFrame):
    return join([msg("%(item)s: closed %(before)s before, opened %(after)s after", item=_of(r.loc[a]),
                     before=num(b), after=num(c))
                 for a, b, c in zip(grp["anchor"], grp["before"], grp["after"])], ";")


def zeros(r: pd.DataFrame, runs: pd.DataFrame) -> list[Finding]:
    """All-zero reports after a month closed with stock: ranked by months zeroed, then stock hidden."""
    if runs.empty:
        return []
    anchor = pd.Series([rows[0] for rows in runs["rows"]], index=runs.index)
    finding = pd.Series(False, index=r.index)
    finding[anchor.to_numpy()] = True
    length = pd.Series(0.0, index=r.index)
    length[anchor.to_numpy()] = (runs["last"] - runs["first"] + 1).to_numpy()
    hidden = pd.Series(0.0, index=r.index)
    hidden[anchor.to_numpy()] = runs["before"].to_numpy()
    p = rarity(pd.DataFrame({"months": length, "units": hidden}), finding, r)
    spans = runs.assign(anchor=anchor, refs=[[r.at[i, "ref"] for i in rows] for rows in runs["rows"]])

    def describe(facility, months, n, items, grp, r):
        around = _around(grp, r)
        return msg("%(facility)s sent %(reports)s of all zeros for %(items)s (%(months)s) right after closing with "
                   "stock (%(around)s): the stock was not counted.", facility=code(facility),
                   reports=nmsg("%(n)s report", "%(n)s reports", n=count(n)),
                   items=nmsg("%(n)s item", "%(n)s items", n=count(len(items))), months=months, around=around)
    return _facility_findings("report_zero", r, spans, p, describe)


def missing(r: pd.DataFrame) -> list[Finding]:
    """Months with no report between two reports of the same facility and item, ranked by the
    months missing, then by how much less stock there was after than before."""
    same = (r["facility_code"] == r["facility_code"].shift()) & (r["item_code"] == r["item_code"].shift())
    step = r["month_no"] - r["month_no"].shift()
    before, after = r["closing"].shift(), r["opening"]
    finding = same & (step > 1) & ((before > 0) | (after > 0))
    drop = (r["closing"].shift() - r["opening"]).where(finding, 0.0)
    p = rarity(pd.DataFrame({"months": (step - 1).where(finding, 0.0), "units": drop.clip(lower=0)}), finding, r)
    gaps = r[finding].assign(first=(r["month_no"].shift() + 1)[finding].astype(int),
                             last=(r["month_no"] - 1)[finding].astype(int),
                             before=r["closing"].shift()[finding], after=r["opening"][finding])
    spans = pd.DataFrame({"facility_code": gaps["facility_code"], "item_code": gaps["item_code"],
                          "first": gaps["first"], "last": gaps["last"], "before": gaps["before"],
                          "after": gaps["after"], "anchor": gaps.index,
                          "refs": [[prev, ref] for prev, ref in zip(r["ref"].shift()[finding], gaps["ref"])]})

    def describe(facility, months, n, items, grp, r):
        around = _around(grp, r)
        return msg("%(facility)s sent no report for %(items)s for %(months)s (%(span)s) between months it reported "
                   "(%(around)s).", facility=code(facility),
                   items=nmsg("%(n)s item", "%(n)s items", n=count(len(items))),
                   months=nmsg("%(n)s month", "%(n)s months", n=count(n)), span=months, around=around)
    return _facility_findings("report_missing", r, spans, p, describe)


def stockout(r: pd.DataFrame) -> list[Finding]:
    """A facility out of an item it uses while another of its region holds far more than it needs."""
    by = r.groupby(["facility_code", "item_code"])["consumed"]
    use = by.transform("median")  # above zero: the facility uses the item in most months
    holder_use = np.maximum(use, by.transform("mean"))
    out_now = (r["closing_m"] == 0) & (use > 0)
    spare = (r["closing"] - MAX_STOCK_MONTHS * holder_use).clip(lower=0)
    holders = r.assign(spare=spare, use=holder_use)[spare > 0]
    best = (holders.sort_values(["spare", "facility_code"], ascending=[False, True])
                   .drop_duplicates(["region", "item_code", "period"])
                   .set_index(["region", "item_code", "period"]))
    key = pd.MultiIndex.from_frame(r[["region", "item_code", "period"]])
    holder = best.reindex(key)
    holder.index = r.index
    months_spare = holder["spare"] / use.where(use > 0)
    finding = out_now & (holder["facility_code"].notna()) & (holder["facility_code"] != r["facility_code"]) \
        & (months_spare >= 1)
    # Stockouts are common; what is rare is stock to spare next door during one. So the finding is
    # ranked among the data's stockouts, not among all its reports.
    evidence = pd.DataFrame({"months": months_spare.where(finding, 0.0),
                             "days": r["stockout_days"].fillna(0).where(finding, 0.0)})[out_now]
    p = rarity(evidence, finding[out_now], r)
    out = []
    for i, pi in p.items():
        row, h = r.loc[i], holder.loc[i]
        days = (nmsg(" (%(n)s stockout day)", " (%(n)s stockout days)", n=count(row.stockout_days))
                if row.stockout_days and row.stockout_days > 0 else join([]))
        reason = msg("%(facility)s closed %(period)s with no %(item)s left%(days)s, against a usual use of %(use)s a "
                     "month, while %(holder)s in the same region held %(held)s, %(holder_use)s: %(spare)s to spare, "
                     "%(months)s months of %(facility)s's use.", facility=code(row.facility_code),
                     period=month(row.period), item=_of(row), days=days, use=num(round(use[i], 1)),
                     holder=code(h.facility_code), held=quantity(h.closing, row.unit),
                     holder_use=(msg("%(months)s months of its own use", months=num(h.closing / h.use, 1))
                                 if h.use > 0 else msg("none of it used there")),
                     spare=num(round(h.spare)), months=num(months_spare[i], 1))
        out.append(Finding("report_stockout", row.facility_code, row.item_code, int(row.month_no), row.ref,
                           row.period, float(pi), reason, [row.ref],
                           {"holder": h.facility_code, "holder_closing": float(h.closing),
                            "holder_use": round(float(h.use), 3), "spare": float(h.spare),
                            "usual_use": round(float(use[i]), 3)}))
    return out
