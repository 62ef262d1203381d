"""How surprising a report finding is here, and one flag per event.

Scores. A detector describes each report by a tuple of evidence (most telling first: what kind of
finding, then how large a share, then how many units) and names the reports that are findings.
A finding's rarity is the empirical tail probability of its evidence among every report the
detector reads in this data set, ``p_data = (reports with evidence at least as strong) / (N +
PRIOR_REPORTS + 1)``, the comparison being lexicographic, so two findings tie only when their
evidence is the same. PRIOR_REPORTS clean reports are assumed before any are read, so that a
handful of reports cannot make a finding look ordinary.

Same-month peers. A finding that many facilities share in the same month (a national write-off
wave after a recall, the first months of a new reporting system) is not a local event. The rate of
findings among the reports of the same item that month, and among the facilities reporting any item that month, each smoothed
towards the data's overall rate with PEER_PRIOR pseudo-reports and leaving the finding's own
report out (peers are the others), is divided by the overall rate; the
larger ratio (at least 1) multiplies ``p_data``; for any item, a facility counts once. A finding is kept when the resulting ``p`` is at
most ALPHA, and its score is ``1 - p ** (1/4)``: about 0.93 for the rarest of 40,000 reports, 0.82
for 1 in 1,000, 0.53 at ALPHA. No threshold depends on the data set; the same evidence scores
lower where it is common.

Events. Findings about the same facility and item in months no more than EPISODE_GAP months
apart are one event: their hits share one subject and case (the first month's report), so they
merge into one flag, and one detector's several months become one hit with its strongest month's
reason first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from anomaly.hits import Hit
from stock.messages import Reasons, join, month, msg

ALPHA = 0.05
"""A finding at least as common as this (after same-month peers) is not surprising enough to flag."""
PRIOR_REPORTS = 100
"""Clean reports assumed before reading any: a finding among 5 reports is not 1 in 6."""
PEER_PRIOR = 10
"""Pseudo-reports at the overall rate that smooth a month's rate of findings."""
EPISODE_GAP = 2
"""Findings this many months apart or closer, same facility and item, are one event."""


def rarity(evidence: pd.DataFrame, finding: pd.Series, reports: pd.DataFrame) -> pd.Series:
    """Empirical tail probability of each report's evidence among all reports (the rows of
    ``evidence``, columns compared in order, larger = stronger), times its same-month peer lift.

    ``finding`` marks the reports that are findings; ``reports`` is the report frame (facility,
    item and period of each row). Returns ``p`` for the findings surprising enough to keep
    (at most ALPHA)."""
    n = len(evidence)
    if not finding.any():
        return pd.Series(dtype=float)
    cols = list(evidence.columns)
    order = evidence.sort_values(cols, ascending=False, kind="stable")
    pos = pd.Series(np.arange(1, n + 1), index=order.index)
    group = order.groupby(cols, sort=False, dropna=False).ngroup()
    at_least = pos.groupby(group.to_numpy()).transform("max")
    p_data = at_least.reindex(evidence.index) / (n + PRIOR_REPORTS + 1)
    ctx = reports.loc[evidence.index, ["facility_code", "item_code", "period"]].assign(f=finding.astype(float))
    # Same item, same month: the share of its reports that are findings.
    overall = ctx["f"].mean()
    by_item = ctx.groupby(["item_code", "period"])["f"]
    lift = ((by_item.transform("sum") - ctx["f"] + PEER_PRIOR * overall)
            / (by_item.transform("size") - 1 + PEER_PRIOR)) / overall
    # Any item, same month: the share of reporting facilities with a finding (a facility's several
    # items are one site).
    sites = ctx.groupby(["facility_code", "period"])["f"].max().reset_index()
    site_overall = sites["f"].mean()
    by_month = sites.groupby("period")["f"]
    sites["lift"] = ((by_month.transform("sum") - sites["f"] + PEER_PRIOR * site_overall)
                     / (by_month.transform("size") - 1 + PEER_PRIOR)) / site_overall
    site_lift = ctx[["facility_code", "period"]].merge(sites, how="left", on=["facility_code", "period"])["lift"]
    lift = np.maximum(np.maximum(lift, site_lift.to_numpy()), 1.0)
    p = (p_data * lift).clip(upper=1.0)[finding]
    return p[p <= ALPHA]


def score(p: float) -> float:
    return float(1 - p ** 0.25)


@dataclass
class Finding:
    """One detector's finding about one report (or one facility's reports), before events merge."""

    detector: str
    facility_code: str
    item_code: str | None
    month_no: int
    ref: str
    period: str
    p: float
    reason: str
    refs: list[str]
    details: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return score(self.p)


def to_hits(findings: list[Finding]) -> list[Hit]:
    """Group findings into events and return one hit per detector per event."""
    if not findings:
        return []
    hits: list[Hit] = []
    by_subject: dict[tuple, list[Finding]] = {}
    for f in findings:
        by_subject.setdefault((f.facility_code, f.item_code), []).append(f)
    for (facility, item), group in sorted(by_subject.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        group.sort(key=lambda f: (f.month_no, f.detector))
        episode = [group[0]]
        for f in group[1:]:
            if f.month_no - max(x.month_no for x in episode) <= EPISODE_GAP:
                episode.append(f)
            else:
                hits.extend(_episode_hits(facility, item, episode))
                episode = [f]
        hits.extend(_episode_hits(facility, item, episode))
    return hits


def _episode_hits(facility: str, item: str | None, episode: list[Finding]) -> list[Hit]:
    first = episode[0]
    subject, subject_id = (("facility_item", f"{facility}:{item}:{first.period}") if item is not None
                           else ("facility", f"{facility}:{first.period}"))
    months = sorted({f.period for f in episode})
    out = []
    for detector in sorted({f.detector for f in episode}):
        mine = sorted((f for f in episode if f.detector == detector), key=lambda f: (f.p, f.month_no))
        best = mine[0]
        reason = best.reason
        if len(mine) > 1:
            reason = Reasons([reason, msg("Also in %(months)s.",
                                          months=join([month(p) for p in sorted(f.period for f in mine[1:])], ","))])
        refs = sorted({r for f in mine for r in f.refs})
        details = {**best.details, "reports": refs, "period": best.period, "event_months": months,
                   "p": round(best.p, 6), "months": [{"period": f.period, "p": round(f.p, 6), **f.details}
                                                    for f in sorted(mine, key=lambda f: f.month_no)]}
        out.append(Hit(detector, subject, subject_id, facility, (), best.score, reason, details, case=first.ref))
    return out


def month_no(period: str) -> int:
    return int(period[:4]) * 12 + int(period[5:7])


def period_of(n: int) -> str:
    return f"{(n - 1) // 12}-{(n - 1) % 12 + 1:02d}"
