"""A user whose dispensing stands out from the colleagues who work alongside them.

Diversion by one member of staff shows in how they work rather than in any single dispensing:
narcotics recorded while the facility is shut, a share of controlled items none of their
colleagues comes near, or far more dispensings a day than anyone else there. Each user is
measured on

- off-hours share: of their controlled dispensings, the share recorded in the local off-hours
  window (``off_hours_start`` to ``off_hours_end``);
- controlled share: of all their dispensings, the share of controlled items;
- rate: dispensings per day on which they dispensed anything;

and compared with their colleagues (the other users who dispensed at the same facility) by the
modified z-score, 0.6745·(x − median)/MAD, over the colleagues only. When the MAD is zero the spread
falls back to the mean absolute deviation ×1.253314; when every colleague has the same value
(typically none of them works off-hours at all) there is no spread to measure against, and a user
is an outlier when they are past that common value by a set margin (ZERO_SPREAD_MARGIN). Every
measure also needs at least MIN_RATIO times the colleagues' median. Colleagues who are outliers
themselves are left out of the yardstick (after a first pass), so that two such users in one group
do not hide each other.

A facility with fewer than ``min_peers`` colleagues has too few to compare a rate or a controlled
share with (both depend on the facility's size and patients). The off-hours share depends only on
when a kind of facility is open, so there the user is compared with the staff of facilities of the
same kind in the same region, or nationally when the region has too few.

Hospitals work through the night, often with staff who work only nights, so a night-shift
pharmacist is an outlier against day colleagues without having done anything wrong. What sets
diversion apart is that the controlled items go out off-hours more often than the user's own other
work does: an off-hours share is flagged only when it is also improbable (binomial, below
SHIFT_CHANCE) given the off-hours share of that user's uncontrolled dispensings. For the same
reason a controlled share or a rate within reach of a colleague's own (below RIVAL_RATIO times the
highest colleague) is not flagged: a pattern two people share is a rota, not one person's habit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import bdtrc

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from anomaly.wording import facility_kinds
from stock.messages import code, count, join, msg, nmsg, num, pct

NAME = "users"

EVIDENCE_CAP = 50
"""A flag cites at most this many dispensings (the largest), so that it stays reviewable."""
MIN_OFF_HOURS = 2
"""Off-hours controlled dispensings below which a user's off-hours share is not judged."""
MIN_DISPENSINGS = 20
"""Dispensings below which a user's controlled share and rate are not judged."""
MIN_DAYS = 5
"""Days of work below which a user's rate is not judged."""
MIN_RATIO = 2.0
"""An outlier's value is at least this multiple of the colleagues' median."""
RIVAL_RATIO = 1.5
"""A controlled share or rate is also at least this multiple of the highest colleague's."""
SHIFT_CHANCE = 0.001
"""An off-hours share this likely given the user's own uncontrolled work is their shift, not a sign."""
ZERO_SPREAD_MARGIN = {"off_hours": 0.10, "controlled": 0.15, "rate": 0.0}
"""With every colleague at one value, how far past it (absolutely) an outlier must be; a rate then
relies on MIN_RATIO and RIVAL_RATIO alone."""
MEASURES = ("off_hours", "controlled", "rate")
VALUE = {"off_hours": "off_hours_share", "controlled": "controlled_share", "rate": "rate"}
def off_hours(hour: pd.Series, start: int, end: int) -> pd.Series:
    """Whether a local hour falls in the off-hours window, which may wrap past midnight."""
    if start > end:
        return (hour >= start) | (hour < end)
    return (hour >= start) & (hour < end)


def per_user(d: pd.DataFrame, start: int, end: int) -> pd.DataFrame:
    """One row per facility and user: counts, shares and rate."""
    off = off_hours(d["local_hour"], start, end).to_numpy()
    ctrl = d["controlled"].to_numpy()
    d = d.assign(_off_c=off & ctrl, _off_u=off & ~ctrl)
    u = (d.groupby(["facility_code", "recorded_by"], sort=True)
          .agg(facility_kind=("facility_kind", "first"), region=("region", "first"),
               dispensings=("entry_id", "size"), days=("local_date", "nunique"),
               controlled=("controlled", "sum"), off_controlled=("_off_c", "sum"),
               off_uncontrolled=("_off_u", "sum"))
          .reset_index())
    u["rate"] = u["dispensings"] / u["days"]
    u["controlled_share"] = u["controlled"] / u["dispensings"]
    u["off_hours_share"] = np.where(u["controlled"] > 0, u["off_controlled"] / u["controlled"].clip(lower=1), 0.0)
    u["uncontrolled"] = u["dispensings"] - u["controlled"]
    u["own_off_share"] = u["off_uncontrolled"] / u["uncontrolled"].clip(lower=1)
    # Laplace's rule keeps a user with no off-hours work at all from an expected share of zero.
    p_own = (u["off_uncontrolled"] + 1) / (u["uncontrolled"] + 2)
    u["shift_chance"] = bdtrc(u["off_controlled"] - 1, u["controlled"], p_own)
    return u


def colleague_stats(u: pd.DataFrame, value: str, group: list[str], among: pd.Series,
                    yardstick: pd.Series) -> pd.DataFrame:
    """For each user in ``among``: median, spread, maximum and number of ``value`` over the other
    members of their group who are in ``yardstick``.

    Groups are a facility's staff, or one kind of facility's staff in a region or the nation; each
    user judged is paired with every other member, so the user is never part of their own yardstick.
    """
    cols = list(dict.fromkeys(group + ["recorded_by", "facility_code", value]))
    left = u.loc[among, cols].reset_index()
    others = u[yardstick]
    right = others[group].assign(_who=others["recorded_by"], _fac=others["facility_code"], _v=others[value])
    pairs = left.merge(right, on=group, how="inner")
    pairs = pairs[(pairs["_who"] != pairs["recorded_by"]) | (pairs["_fac"] != pairs["facility_code"])]
    by = pairs.groupby("index", sort=False)["_v"]
    med = by.median()
    pairs["_dev"] = (pairs["_v"] - pairs["index"].map(med)).abs()
    dev = pairs.groupby("index", sort=False)["_dev"]
    out = pd.DataFrame({"median": med, "mad": dev.median(), "mean_ad": dev.mean(), "max": by.max(),
                        "n": by.size(), "facilities": pairs.groupby("index", sort=False)["_fac"].nunique()})
    out = out.reindex(u.index)
    out["n"] = out["n"].fillna(0)
    return out


def _judge(u: pd.DataFrame, measure: str, enough: pd.Series, yardstick: pd.Series, settings) -> pd.DataFrame:
    """Colleague statistics, z-score and verdict of one measure for every user."""
    value = VALUE[measure]
    st = colleague_stats(u, value, ["facility_code"], enough, yardstick)
    st["where"] = "facility"
    if measure == "off_hours":
        for group, label in ((["facility_kind", "region"], "region"), (["facility_kind"], "nation")):
            short = enough & (st["n"] < settings.min_peers)
            if not short.any():
                break
            wider = colleague_stats(u, value, group, short, yardstick)
            use = short & (wider["n"] >= settings.min_peers)
            st.loc[use, wider.columns] = wider.loc[use]
            st.loc[use, "where"] = label
    x = u[value]
    diff = x - st["median"]
    st["flat"] = (st["mad"] <= 0) & (st["mean_ad"] <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        st["z"] = np.where(st["mad"] > 0, 0.6745 * diff / st["mad"],
                           np.where(st["mean_ad"] > 0, diff / (1.253314 * st["mean_ad"]),
                                    np.where(diff > ZERO_SPREAD_MARGIN[measure], np.inf, 0.0)))
    high = (enough & (st["n"] >= settings.min_peers) & (st["z"] > settings.mad_threshold)
            & (x >= MIN_RATIO * st["median"]))
    if measure == "off_hours":
        high &= u["shift_chance"] < SHIFT_CHANCE
    else:
        high &= x >= RIVAL_RATIO * st["max"]
    st["high"] = high.fillna(False).astype(bool)
    return st


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    d = frames.dispenses
    d = d[d["recorded_by"] != ""]
    if d.empty:
        return []
    u = per_user(d, s.off_hours_start, s.off_hours_end)
    enough = {"off_hours": u["off_controlled"] >= MIN_OFF_HOURS,
              "controlled": u["dispensings"] >= MIN_DISPENSINGS,
              "rate": (u["dispensings"] >= MIN_DISPENSINGS) & (u["days"] >= MIN_DAYS)}
    everyone = pd.Series(True, index=u.index)
    judged = {}
    for m in MEASURES:
        first = _judge(u, m, enough[m], everyone, s)
        # Outliers leave the yardstick, so that two of them in one group do not hide each other.
        judged[m] = _judge(u, m, enough[m], ~first["high"], s) if first["high"].any() else first
    flagged = np.flatnonzero(np.logical_or.reduce([judged[m]["high"].to_numpy() for m in MEASURES]))
    if len(flagged) == 0:
        return []
    return _hits(d, u.iloc[flagged], judged, s)


def _hits(d: pd.DataFrame, flagged: pd.DataFrame, judged: dict[str, pd.DataFrame], s) -> list[Hit]:
    thr = s.mad_threshold
    window = msg("%(start)s:00 and %(end)s:00", start=code(f"{s.off_hours_start:02d}"),
                 end=code(f"{s.off_hours_end:02d}"))
    mine_all = d.merge(flagged[["facility_code", "recorded_by"]], on=["facility_code", "recorded_by"])
    mine_all["_off"] = off_hours(mine_all["local_hour"], s.off_hours_start, s.off_hours_end).to_numpy()
    mine_all = mine_all.sort_values(["quantity", "seq"], ascending=[False, True])
    by_user = dict(iter(mine_all.groupby(["facility_code", "recorded_by"], sort=False)))
    hits = []
    for idx, row in flagged.iterrows():
        found = [m for m in MEASURES if judged[m].at[idx, "high"]]
        mine = by_user[(row["facility_code"], row["recorded_by"])]
        if "off_hours" in found:
            pool = mine[mine["_off"] & mine["controlled"]]
        elif "controlled" in found:
            pool = mine[mine["controlled"]]
        else:
            pool = mine
        zs = [min(float(judged[m].at[idx, "z"]), 4 * thr) for m in found]
        score = min(0.9, squash(max(zs) - thr, half=thr, floor=0.5, ceiling=0.85) + 0.03 * (len(found) - 1))
        cited = (msg(" (the %(cap)s largest of %(n)s such dispensings are cited)", cap=count(EVIDENCE_CAP),
                     n=count(len(pool))) if len(pool) > EVIDENCE_CAP else join([]))
        reason = msg("%(user)s %(what)s%(cited)s.", user=code(row['recorded_by']), cited=cited,
                     what=join([_text(m, row, judged[m].loc[idx], window) for m in found], "; and"))
        details = {"dispensings": int(row["dispensings"]), "days": int(row["days"]),
                   "controlled": int(row["controlled"]), "off_hours_controlled": int(row["off_controlled"])}
        for m in found:
            st = judged[m].loc[idx]
            z = float(st["z"])
            details[m] = {"value": round(float(row[VALUE[m]]), 4), "median": round(float(st["median"]), 4),
                          "z": round(z, 2) if np.isfinite(z) else None, "compared_with": int(st["n"]),
                          "group": st["where"]}
        hits.append(Hit(NAME, "user", row["recorded_by"], row["facility_code"],
                        tuple(pool["entry_id"].head(EVIDENCE_CAP)), score, reason, details))
    return hits


def _text(measure: str, row: pd.Series, st: pd.Series, window):
    n = int(st["n"])
    if st["where"] == "facility":
        whom = nmsg("%(n)s colleague at %(facility)s", "%(n)s colleagues at %(facility)s", n=count(n),
                    facility=code(row['facility_code']))
    else:
        kinds = facility_kinds(row["facility_kind"], int(st["facilities"]))
        whom = (msg("%(n)s staff of %(kinds)s in %(region)s, %(facility)s having too few", n=count(n), kinds=kinds,
                    region=code(row['region']), facility=code(row['facility_code']))
                if st["where"] == "region" else
                msg("%(n)s staff of %(kinds)s nationally, %(facility)s having too few", n=count(n), kinds=kinds,
                    facility=code(row['facility_code'])))
    z = float(st["z"])
    zt = msg("z=%(z)s", z=num(z, 1)) if np.isfinite(z) else msg("all of them alike")
    if measure == "off_hours":
        if not np.isfinite(z) and st["median"] == 0:
            zt = msg("none of them dispensing controlled items then")
        return msg("dispensed %(share)s of their controlled items (%(off)s of %(all)s) between %(window)s, against "
                   "%(own)s of their other dispensings and a median of %(median)s for %(whom)s (%(z)s)",
                   share=pct(row['off_hours_share']), off=count(row['off_controlled']), all=count(row['controlled']),
                   window=window, own=pct(row['own_off_share']), median=pct(st['median']), whom=whom, z=zt)
    if measure == "controlled":
        return msg("dispensed controlled items in %(share)s of their dispensings (%(controlled)s of %(all)s) "
                   "against a median of %(median)s for %(whom)s (%(z)s)", share=pct(row['controlled_share']),
                   controlled=count(row['controlled']), all=count(row['dispensings']), median=pct(st['median']),
                   whom=whom, z=zt)
    return msg("recorded %(rate)s dispensings a day over %(days)s against a median of %(median)s for %(whom)s "
               "(%(z)s)", rate=num(row['rate'], 1),
               days=nmsg("%(n)s day", "%(n)s days", n=count(row['days'])), median=num(st['median'], 1),
               whom=whom, z=zt)
