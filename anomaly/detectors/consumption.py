"""A facility dispensing far more of an item in a month than its own history and its peers explain.

Diverted stock usually leaves through ordinary-looking dispensings, each on a plausible
prescription; what gives it away is the volume. Volume alone misleads, though: a hospital serves
ten times the patients of a health centre, and every facility dispenses more antibiotics in
winter. So each month is measured as a rate, the quantity of the item per patient the facility
served that month (distinct health cards dispensed anything there), and that rate is compared

(a) with the facility's own months of the item, after removing the network-wide seasonal level
    of the item that month (the rest of the network's rate, relative to its usual), so a winter
    peak that every facility shares does not stand out against a summer history; and
(b) with peer facilities of the same kind in the same month, which share the season and the
    kind of patients.

The patients served are the denominator rather than the patients who received the item, because
an inflated month is typically made of extra dispensings to extra patients, each for the usual
amount: the quantity per recipient then stays flat while the quantity per patient served rises.

Both comparisons use the modified z-score, 0.6745·(x − median)/MAD, over all the values compared,
the month itself included, as DHIS2 does. When the MAD is zero (more than half the values are
equal) the spread falls back to the mean absolute deviation ×1.253314 (IBM's rule for the same
case). The mean deviation is zero only when every value, this month's included, is the same, and
then the month is no outlier; so no third, relative rule is needed here. A month is flagged when

- it is high in every comparison it has data for (``min_history_months`` other months,
  ``min_peers`` other facilities; at least one of the two). With both, each z-score must pass half
  of ``mad_threshold`` and their geometric mean the whole of it: a seasonal peak is high against
  the facility's history but not against its peers, a facility that always dispenses more than
  its peers is high against them but not against its history, and a real spike is high against
  both;
- its rate is at least MIN_RATIO times its own median and PEER_RATIO times its peers', so
  that a very steady facility's small wobble does not pass for leakage;
- it has at least MIN_DISPENSINGS dispensings of the item, and so many that chance alone would
  give them less than MAX_CHANCE of the time (Poisson, at the facility's usual dispensings per
  patient served): six months of a few dispensings each understate how much small counts wobble.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import pdtrc

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from anomaly.wording import facility_kinds
from stock.messages import code, count, join, msg, nmsg, num
from stock.messages import month as year_month
from stock.messages import qty as quantity

NAME = "consumption"

MIN_DISPENSINGS = 10
"""Dispensings of the item in a month below which the month is too small to judge."""
MIN_RATIO = 2.0
"""A flagged month's rate is at least this multiple of each median it is compared with."""
PEER_RATIO = 1.5
"""...and at least this multiple of its peers' median: a facility that usually dispenses less
than its peers may triple and still end up below twice their median."""
MAX_CHANCE = 0.01
"""A month whose dispensings are this likely by chance alone (Poisson) is not flagged."""
EVIDENCE_CAP = 50
"""A flag cites at most this many dispensings (the largest), so that it stays reviewable."""


def robust_z(x: pd.Series, frame: pd.DataFrame, group_keys: list[str]) -> pd.DataFrame:
    """Median, modified z-score and number of values of ``x`` within groups of ``frame``, the value
    itself among them. A group whose values are all equal gives a z-score of zero."""
    g = frame[group_keys].assign(_x=x.to_numpy())
    grouped = g.groupby(group_keys, sort=False)["_x"]
    med = grouped.transform("median")
    diff = g["_x"] - med
    g["_dev"] = diff.abs()
    by_dev = g.groupby(group_keys, sort=False)["_dev"]
    mad = by_dev.transform("median")
    mean_ad = by_dev.transform("mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(mad > 0, 0.6745 * diff / mad,
                     np.where(mean_ad > 0, diff / (1.253314 * mean_ad), 0.0))
    return pd.DataFrame({"median": med.to_numpy(), "z": z, "n": grouped.transform("size").to_numpy()},
                        index=frame.index)


def monthly_rates(d: pd.DataFrame) -> pd.DataFrame:
    """One row per facility, item and month in which the facility served anyone: the quantity,
    dispensings and recipients of the item (zero when none), the patients served, and the rate."""
    cells = (d.groupby(["facility_code", "item_code", "month"], sort=True, observed=True)
              .agg(quantity=("quantity", "sum"), dispensings=("entry_id", "size"),
                   recipients=("health_card_id", "nunique"))
              .reset_index())
    with_card = d[d["health_card_id"] != ""]
    served = (with_card.groupby(["facility_code", "month"], sort=True).agg(served=("health_card_id", "nunique"))
              .reset_index())
    served = served[served["served"] > 0]
    # Every month the facility served patients, for every item it ever dispensed: a month
    # without the item is a zero, not a gap.
    items = cells[["facility_code", "item_code"]].drop_duplicates()
    grid = items.merge(served, on="facility_code", how="inner")
    grid = grid.merge(cells, on=["facility_code", "item_code", "month"], how="left")
    for col in ("quantity", "dispensings", "recipients"):
        grid[col] = grid[col].fillna(0)
    kinds = d.drop_duplicates("facility_code").set_index("facility_code")["facility_kind"]
    grid["facility_kind"] = grid["facility_code"].map(kinds)
    grid["rate"] = grid["quantity"] / grid["served"]
    return grid


def _seasonal_index(grid: pd.DataFrame) -> pd.Series:
    """The rest of the network's rate for the item that month, relative to its usual month.

    Leaving the facility itself out keeps a spike from raising its own yardstick.
    """
    item_month = grid.groupby(["item_code", "month"])["quantity"].transform("sum")
    served_month = (grid.drop_duplicates(["facility_code", "month"]).groupby("month")["served"].sum())
    total_served = grid["month"].map(served_month)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = (item_month - grid["quantity"]) / (total_served - grid["served"])
    rest = rest.where(np.isfinite(rest) & (rest > 0))
    usual = rest.groupby([grid["facility_code"], grid["item_code"]]).transform("median")
    # Only a rise is taken out: dividing a quiet month by a small index would turn noise in
    # the rest of the network into a spike here.
    return (rest / usual).where(usual > 0).clip(lower=1.0).fillna(1.0)


def _combined(grid: pd.DataFrame, thr: float) -> tuple[np.ndarray, pd.Series]:
    """One z-score per month from the comparisons it has data for, and whether it is high.

    With both, the month must stand out in each (above half the threshold, and at least
    MIN_RATIO times each median) and their geometric mean must pass the threshold: a seasonal
    peak is high against the facility's history but not against its peers, and a facility that
    always dispenses more than its peers is high against them but not against its history.
    """
    own_ok, peer_ok = grid["own_ok"], grid["peer_ok"]
    own_z, peer_z = grid["own_z"].clip(lower=0), grid["peer_z"].clip(lower=0)
    both = own_ok & peer_ok
    with np.errstate(invalid="ignore"):
        z = np.where(both, np.sqrt(own_z * peer_z), np.where(own_ok, own_z, np.where(peer_ok, peer_z, 0.0)))
    each = np.where(both, (own_z > thr / 2) & (peer_z > thr / 2), True)
    ratio = ((~own_ok | (grid["adjusted"] >= MIN_RATIO * grid["own_median"]))
             & (~peer_ok | (grid["rate"] >= PEER_RATIO * grid["peer_median"])))
    return z, (own_ok | peer_ok) & (z > thr) & each & ratio


def _chance(grid: pd.DataFrame) -> pd.Series:
    """Probability of at least this many dispensings in the month by chance alone (Poisson), given
    the facility's usual dispensings per patient served (or its peers', without a history)."""
    per_served = grid["dispensings"] / grid["served"] / grid["season"]
    usual = per_served.groupby([grid["facility_code"], grid["item_code"]]).transform("median")
    peers = grid.assign(_p=grid["dispensings"] / grid["served"]).groupby(
        ["facility_kind", "item_code", "month"])["_p"].transform("median")
    expected = np.where(grid["own_ok"], usual * grid["season"], peers) * grid["served"]
    return pd.Series(pdtrc(grid["dispensings"].to_numpy() - 1, np.maximum(expected, 1e-9)), index=grid.index)


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    d = frames.dispenses
    if d.empty:
        return []
    grid = monthly_rates(d)
    thr = s.mad_threshold

    grid["season"] = _seasonal_index(grid)
    grid["adjusted"] = grid["rate"] / grid["season"]
    own = robust_z(grid["adjusted"], grid, ["facility_code", "item_code"])
    peer = robust_z(grid["rate"], grid, ["facility_kind", "item_code", "month"])
    for prefix, stats in (("own", own), ("peer", peer)):
        for col in ("median", "z", "n"):
            grid[f"{prefix}_{col}"] = stats[col]
    grid["own_ok"] = grid["own_n"] - 1 >= s.min_history_months
    grid["peer_ok"] = grid["peer_n"] - 1 >= s.min_peers
    grid["z"], high = _combined(grid, thr)
    grid["chance"] = _chance(grid)
    flagged = grid[high & (grid["dispensings"] >= MIN_DISPENSINGS) & (grid["chance"] < MAX_CHANCE)]
    if flagged.empty:
        return []

    keys = flagged[["facility_code", "item_code", "month"]]
    evidence = d.merge(keys, on=["facility_code", "item_code", "month"], how="inner")
    evidence = evidence.sort_values(["facility_code", "item_code", "month", "quantity", "seq"],
                                    ascending=[True, True, True, False, True])
    evidence = evidence.groupby(["facility_code", "item_code", "month"], sort=False).head(EVIDENCE_CAP)
    ids = evidence.groupby(["facility_code", "item_code", "month"], sort=False)["entry_id"].agg(tuple)
    names = d.drop_duplicates("item_code").set_index("item_code")[["item_name", "unit"]]

    hits = []
    for row in flagged.itertuples(index=False):
        entry_ids = ids[(row.facility_code, row.item_code, row.month)]
        item_name, unit = names.loc[row.item_code, "item_name"], names.loc[row.item_code, "unit"]
        month = f"{row.month:%Y-%m}"
        score = squash(min(row.z, 4 * thr) - thr, half=thr, floor=0.5, ceiling=0.85)
        per = msg("%(rate)s per patient served (%(served)s)", rate=num(round(row.rate, 2)),
                  served=num(row.served, 0))
        parts = []
        if row.own_ok:
            rise = (msg(", raised %(times)sx for the network-wide level that month", times=num(row.season, 1))
                    if row.season >= 1.05 else join([]))
            parts.append(msg("its own median of %(median)s over %(months)s months (z=%(z)s%(rise)s)",
                             median=num(round(row.own_median * row.season, 2)), months=num(row.own_n, 0),
                             z=num(row.own_z, 1), rise=rise))
        if row.peer_ok:
            parts.append(msg("a median of %(median)s at %(others)s (z=%(z)s)", median=num(round(row.peer_median, 2)),
                             others=facility_kinds(row.facility_kind, int(round(row.peer_n - 1)), other=True),
                             z=num(row.peer_z, 1)))
        capped = (msg("; the %(cap)s largest of its %(n)s dispensings are cited", cap=count(EVIDENCE_CAP),
                      n=count(row.dispensings)) if row.dispensings > EVIDENCE_CAP else join([]))
        reason = msg("%(facility)s dispensed %(qty)s of %(item)s in %(month)s in %(dispensings)s to %(patients)s, "
                     "%(per)s, against %(parts)s%(capped)s.", facility=code(row.facility_code),
                     qty=quantity(row.quantity, unit), item=code(item_name), month=year_month(row.month),
                     dispensings=nmsg("%(n)s dispensing", "%(n)s dispensings", n=count(row.dispensings)),
                     patients=nmsg("%(n)s patient", "%(n)s patients", n=count(row.recipients)),
                     per=per, parts=join(parts, "and"), capped=capped)
        details = {"month": month, "quantity": float(row.quantity), "dispensings": int(row.dispensings),
                   "recipients": int(row.recipients), "patients_served": int(row.served),
                   "rate": round(float(row.rate), 4)}
        if row.own_ok:
            details.update(own_median=round(float(row.own_median), 4), own_z=round(float(row.own_z), 2),
                           adjusted_rate=round(float(row.adjusted), 4), history_months=int(row.own_n) - 1)
        if row.peer_ok:
            details.update(peer_median=round(float(row.peer_median), 4), peer_z=round(float(row.peer_z), 2),
                           peers=int(row.peer_n) - 1)
        hits.append(Hit(NAME, "facility_item", f"{row.facility_code}:{row.item_code}:{month}",
                        row.facility_code, entry_ids, score, reason, details))
    return hits

