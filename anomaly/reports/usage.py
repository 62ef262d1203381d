"""What a facility says it used or wrote off: write-offs larger than its use, and consumption far
above its own history and its peers'."""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.detectors.consumption import robust_z
from anomaly.wording import facility_kinds
from stock.messages import code, join, month, msg, num, pct
from stock.messages import qty as quantity
from anomaly.reports.balance import _of, _undo_text, pack_sizes
from anomaly.reports.surprise import Finding, rarity
from stock.settings import Detection

ADJUSTMENT_MIN_UNITS = 10
"""A negative adjustment smaller than this is too small to question."""
ADJUSTMENT_RATIO = 1.0
"""A negative adjustment is large when it exceeds this multiple of the month's consumption and
of the facility's median monthly consumption of the item."""
CONSUMPTION_MIN_UNITS = 20
"""A month consuming less than this is too small to judge against history."""
CONSUMPTION_MIN_RATIO = 2.0
"""A flagged month consumes at least this multiple of the facility's own median."""


def adjustment(r: pd.DataFrame, moves: pd.DataFrame) -> list[Finding]:
    """A negative adjustment (stock written off; the form gives no reason) larger than what the
    facility consumes in a month, both this month and in its usual (median) month, once figures
    that undo it are taken out. A write-off most facilities made the same month (a recall, a batch
    expiring everywhere) is common among its peers and so not surprising here. Write-offs of an
    item the facility does not use in most months (dead stock expiring) rank below the others. A
    write-off that is
    a stated pack size times at most a month's use is a unit count being put right."""
    median = r.groupby(["facility_code", "item_code"])["consumed"].transform("median")
    loss = -moves["adjustment_left"].clip(upper=0)
    reference = np.maximum(r["consumed"], median)
    finding = (loss >= ADJUSTMENT_MIN_UNITS) & (loss > ADJUSTMENT_RATIO * reference)
    # Read in packs of a size the item's name states, a write-off of at most a month's use is a
    # figure counted in units being put right, not stock lost.
    finding &= ~pd.Series([bool(f) and any(x % k == 0 and x / k <= max(ref, 1.0) for k in pack_sizes(name)
                                           for x in (left, -adj))
                           for f, left, adj, ref, name in zip(finding, loss, r["adjustment"], reference, r["item_name"])],
                          index=r.index)
    # Ranked against a month's use; where the facility uses none, against what a facility that
    # uses the item uses in a month (stock it never uses expiring is not many months of use).
    used = r.loc[r["consumed"] > 0]
    typical = r["item_code"].map(used.groupby("item_code")["consumed"].median()).fillna(1.0)
    times = loss / np.maximum(np.where(reference > 0, reference, typical), 1.0)
    held = (loss / (r["opening"] + r["received"]).where(lambda x: x > 0)).fillna(1.0)
    # Stock that moves and is written off says more than stock that sat unused until it expired:
    # a write-off where the facility uses the item ranks above every one where it does not.
    evidence = pd.DataFrame({"in_use": ((median > 0) & finding).astype(int), "times": times.where(finding, 0.0),
                             "units": loss.where(finding, 0.0), "share": held.where(finding, 0.0)})
    p = rarity(evidence, finding, r)
    out = []
    for i, pi in p.items():
        row = r.loc[i]
        stock = row.opening + row.received
        share = (msg(", %(share)s of the %(stock)s it held", share=pct(loss[i] / stock), stock=num(stock))
                 if stock > 0 else join([]))
        undo = _undo_text(row.adjustment, -loss[i], moves.at[i, "adjustment_undone_by"])
        reason = msg("%(facility)s adjusted %(item)s down by %(qty)s in %(period)s%(share)s%(undo)s, against "
                     "%(consumed)s consumed that month and a median of %(median)s a month (%(times)s); the report "
                     "gives no reason.", facility=code(row.facility_code), item=_of(row),
                     qty=quantity(-row.adjustment, row.unit), period=month(row.period), share=share, undo=undo,
                     consumed=num(row.consumed), median=num(round(median[i], 1)),
                     times=(msg("no use to compare with") if reference[i] == 0
                            else msg("%(times)sx", times=num(times[i], 1))))
        out.append(Finding("report_adjustment", row.facility_code, row.item_code, int(row.month_no), row.ref,
                           row.period, float(pi), reason, [row.ref],
                           {"adjustment": float(row.adjustment), "not_undone": float(-loss[i]),
                            "consumed": float(row.consumed), "median_consumed": float(median[i])}))
    return out


def consumption(r: pd.DataFrame, settings: Detection) -> list[Finding]:
    """A month's consumption far above the facility's own history and what its peers did that month.

    Own history: the modified z-score, 0.6745·(x − median)/MAD, of the month's consumption among
    all the facility's months of the item (MAD zero: the mean absolute deviation ×1.253314, as in
    the ledger's consumption detector; all months equal: no outlier). Peers: facilities are of very
    different sizes, so they are compared by how far each one's month is above its own median —
    the same z-score of that ratio among facilities of the same kind reporting the item that
    month. A rise that every peer shares (a campaign, a season, a national resupply) is not high
    against them. A month is a finding when it is high in each comparison it has data for (with
    both: each above half of ``mad_threshold`` and their geometric mean above all of it), at least
    CONSUMPTION_MIN_RATIO times its own median and CONSUMPTION_MIN_UNITS units; it is ranked by
    that z-score among all the data's months.
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
    z = pd.Series(np.where(both, np.sqrt(own_z * peer_z), np.where(own_ok, own_z, 0.0)), index=r.index)
    each = np.where(both, (own_z > thr / 2) & (peer_z > thr / 2), True)
    finding = (own_ok & (z > thr) & each & (r["consumed"] >= CONSUMPTION_MIN_UNITS)
               & (r["consumed"] >= CONSUMPTION_MIN_RATIO * r["own_median"]))
    # Counted in units where the facility counts packs: the figure divided by a pack size the
    # item's name states is an ordinary month of its own (at most its largest other month).
    keys = [r["facility_code"], r["item_code"]]
    place = r["consumed"].groupby(keys).rank(method="first", ascending=False)
    second = r["consumed"].where(place == 2).groupby(keys).transform("max")
    largest = second.fillna(r["consumed"].groupby(keys).transform("max"))
    in_units = pd.Series([bool(f) and any(c % k == 0 and c / k <= top for k in pack_sizes(name))
                          for f, c, top, name in zip(finding, r["consumed"], largest, r["item_name"])], index=r.index)
    finding &= ~in_units
    evidence = pd.DataFrame({"z": z.where(own_ok, 0.0), "units": r["consumed"].where(own_ok, 0.0)})
    p = rarity(evidence, finding, r)
    out = []
    for i, pi in p.items():
        row = r.loc[i]
        parts = [msg("its own median of %(median)s over %(months)s months (z=%(z)s)",
                     median=num(round(row.own_median, 1)), months=num(row.own_n, 0), z=num(row.own_z, 1))]
        details = {"consumed": float(row.consumed), "own_median": float(row.own_median),
                   "own_z": round(float(row.own_z), 2), "history_months": int(row.own_n) - 1}
        if peer_ok[i]:
            parts.append(msg("%(times)sx its median where %(others)s were at a median %(median)sx theirs (z=%(z)s)",
                             times=num(row.relative, 1),
                             others=facility_kinds(row.facility_kind, int(round(row.peer_n - 1)), other=True),
                             median=num(row.peer_median, 1), z=num(row.peer_z, 1)))
            details.update(relative=round(float(row.relative), 3), peer_median=round(float(row.peer_median), 3),
                           peer_z=round(float(row.peer_z), 2), peers=int(row.peer_n) - 1)
        reason = msg("%(facility)s reported consuming %(consumed)s of %(item)s in %(period)s, against %(parts)s.",
                     facility=code(row.facility_code), consumed=quantity(row.consumed, row.unit), item=_of(row),
                     period=month(row.period), parts=join(parts, "and"))
        out.append(Finding("report_consumption", row.facility_code, row.item_code, int(row.month_no), row.ref,
                           row.period, float(pi), reason, [row.ref], details))
    return out
