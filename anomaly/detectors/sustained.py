"""A facility dispensing an item at a raised rate per patient for months, through ordinary fills.

Stock diverted a little at a time through plausible prescriptions shows no single odd month: the
rate per patient served is raised by half or double for two to four months. For every facility and
item, each run of WINDOWS consecutive months is set against the rest of its own history: the
dispensings expected in the run are its own usual dispensings per patient served, times the
patients it served in the run, times the change the rest of its region saw
between those months and the others (a season or an outbreak shared by peers is not local), and
never less than those peers' own rate in the same months (a new service joins its peers). The
chance of at least the observed count is a Poisson tail; the run with the smallest chance is the
facility-item's finding, reported with that chance and the number of runs tried (anomaly.cases).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import pdtrc

from anomaly.detectors.consumption import monthly_rates
from anomaly.features import Frames
from anomaly.hits import Hit
from stock.messages import code, count, msg, nmsg, num, sci
from stock.messages import month as year_month

NAME = "sustained"
WINDOWS = (2, 3, 4)
MIN_OTHER_MONTHS = 6
"""Months outside a run needed to know the facility's usual rate: half a year, so a ledger of a few
months (no history to speak of) is left to the month-by-month consumption detector."""
MAX_CHANCE = 0.01
PRIOR = 1.0
"""Dispensings added to a facility's other months, so an item it rarely gives is not expected at zero."""
EVIDENCE_CAP = 10


def population(frames: Frames) -> int:
    return int(len(frames.dispenses[["facility_code", "item_code"]].drop_duplicates()))


def _season(grid: pd.DataFrame) -> pd.Series:
    """Per row: the rest of the facility's region's dispensings of the item per patient served that month."""
    kind = grid.groupby(["region", "item_code", "month"])[["dispensings", "served"]].transform("sum")
    rest_d, rest_s = kind["dispensings"] - grid["dispensings"], kind["served"] - grid["served"]
    return (rest_d / rest_s.where(rest_s > 0)).fillna(0.0)


def _best_run(disp: np.ndarray, served: np.ndarray, peer: np.ndarray) -> tuple[float, int, int, float, int]:
    """(chance, start, length, expected, runs tried) of the most surprising run of months."""
    best = (1.0, 0, 0, 0.0, 0)
    tried = 0
    n = len(disp)
    for length in WINDOWS:
        for start in range(0, n - length + 1):
            inside = slice(start, start + length)
            outside = np.ones(n, bool)
            outside[inside] = False
            if outside.sum() < MIN_OTHER_MONTHS or served[outside].sum() <= 0:
                continue
            tried += 1
            usual = (disp[outside].sum() + PRIOR) / served[outside].sum()
            peer_in, peer_out = peer[inside].mean(), peer[outside].mean()
            change = peer_in / peer_out if peer_out > 0 and peer_in > 0 else 1.0
            # Above its own history, raised as its peers rose, and above its peers those months.
            expected = max(usual * max(change, 1.0), peer_in) * served[inside].sum()
            observed = disp[inside].sum()
            if observed <= expected:
                continue
            chance = float(pdtrc(observed - 1, expected))
            if chance < best[0]:
                best = (chance, start, length, expected, 0)
    return best[0], best[1], best[2], best[3], tried


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    if d.empty:
        return []
    grid = monthly_rates(d).sort_values(["facility_code", "item_code", "month"])
    grid["region"] = grid["facility_code"].map(d.drop_duplicates("facility_code").set_index("facility_code")["region"])
    grid["peer"] = _season(grid)
    found, total_tried = [], 0
    for (fac, item), g in grid.groupby(["facility_code", "item_code"], sort=True):
        if len(g) < MIN_OTHER_MONTHS + min(WINDOWS):
            continue
        disp, served = g["dispensings"].to_numpy(float), g["served"].to_numpy(float)
        chance, start, length, expected, tried = _best_run(disp, served, g["peer"].to_numpy(float))
        total_tried += tried
        if length and chance < MAX_CHANCE:
            months = g["month"].iloc[start:start + length]
            found.append((fac, item, chance, months, disp[start:start + length].sum(), expected,
                          served[start:start + length].sum()))
    if not found:
        return []
    names = d.drop_duplicates("item_code").set_index("item_code")["item_name"]
    hits = []
    for fac, item, chance, months, observed, expected, served in found:
        mine = d[(d["facility_code"] == fac) & (d["item_code"] == item) & d["month"].isin(months)]
        mine = mine.sort_values(["quantity", "seq"], ascending=[False, True])
        reason = msg("%(facility)s dispensed %(item)s %(times)s from %(start)s to %(end)s to %(served)s patients "
                     "served, where its own rate in other months, raised for any change its peers saw, predicts "
                     "%(expected)s (%(ratio)sx, chance %(chance)s).", facility=code(fac), item=code(names[item]),
                     times=nmsg("%(n)s time", "%(n)s times", n=count(int(observed))), start=year_month(months.iloc[0]),
                     end=year_month(months.iloc[-1]), served=count(int(served)), expected=num(expected, 1),
                     ratio=num(observed / expected, 1), chance=sci(chance))
        hits.append(Hit(NAME, "facility_item", f"{fac}:{item}", fac, tuple(mine["entry_id"].head(EVIDENCE_CAP)),
                        float(1 - chance), reason,
                        {"p": chance, "tests": total_tried, "months": [f"{m:%Y-%m}" for m in months],
                         "dispensings": int(observed), "expected": round(float(expected), 2)}))
    return hits
