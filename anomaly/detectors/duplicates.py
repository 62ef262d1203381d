"""The same patient collecting the same controlled item at several facilities at once.

Each dispensing covers the patient for the days supply of its prescription (30 days when there
is none on record), counted from the prescription's first fill when it was filled in parts. A
second collection of the item at another facility while that supply is still running is doctor
shopping: each visit looks proper where it happens, and only the national ledger sees them side
by side. Refills at the same facility are that facility's own business (the prescriptions
detector judges them), a referral to another facility after the supply ran out is care, and a
patient who comes back a few days early is ordinary. Each episode of overlapping collections is
one flag about the patient, with every overlapping dispensing as evidence.
"""

from __future__ import annotations

import pandas as pd

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from stock.messages import code, count, day, join, msg, nmsg
from stock.messages import qty as quantity

NAME = "duplicates"

DEFAULT_DAYS_SUPPLY = 30
"""What a dispensing covers when its prescription, and so its days supply, is unknown."""
EARLY_REFILL_SHARE = 0.25
"""A collection up to this share of the supply early (7 days of 30) is a patient coming back in
time, not a second supply: the usual rule that a refill is due once three quarters are used..."""
EARLY_REFILL_DAYS = 3
"""... and never less than this many days, so a short course collected a day or two early at a
pharmacy after the hospital is not taken for a second supply."""

_COLS = ["seq", "entry_id", "health_card_id", "item_code", "facility_code", "prescription_id", "day",
         "ends", "days_supply"]


def _windows(frames: Frames) -> pd.DataFrame:
    """Controlled dispensings with the day each one's supply runs out, for patients who collected
    the item at more than one facility (everyone else cannot overlap across facilities)."""
    d = frames.dispenses
    d = d[d["controlled"] & (d["health_card_id"] != "")]
    if d.empty:
        return d
    several = d.groupby(["health_card_id", "item_code"])["facility_code"].transform("nunique") > 1
    d = d[several]
    rx = frames.prescriptions[["prescription_id", "days_supply"]].drop_duplicates("prescription_id")
    d = d.merge(rx, on="prescription_id", how="left")
    supply = pd.to_numeric(d["days_supply"], errors="coerce")
    d["days_supply"] = supply.where(supply > 0, DEFAULT_DAYS_SUPPLY).fillna(DEFAULT_DAYS_SUPPLY).astype("float64")
    d["day"] = d["local_date"]
    # A prescription filled in parts is one supply, running from its first fill.
    start = d.groupby("prescription_id")["day"].transform("min").where(d["prescription_id"] != "", d["day"])
    d["ends"] = start + pd.to_timedelta(d["days_supply"], unit="D")
    return d


def _overlaps(d: pd.DataFrame) -> pd.DataFrame:
    """Pairs (earlier a, later b) at different facilities where b falls inside a's supply, past
    the early-refill allowance, and is not the rest of the same prescription."""
    w = d[_COLS]
    p = w.merge(w, on=["health_card_id", "item_code"], suffixes=("_a", "_b"))
    p = p[(p["facility_code_a"] != p["facility_code_b"])
          & ((p["day_a"] < p["day_b"]) | ((p["day_a"] == p["day_b"]) & (p["seq_a"] < p["seq_b"])))]
    p = p[(p["prescription_id_a"] == "") | (p["prescription_id_a"] != p["prescription_id_b"])]
    left = (p["ends_a"] - p["day_b"]).dt.days
    p = p.assign(days_left=left, share_left=(left / p["days_supply_a"]).clip(upper=1.0))
    allowance = (EARLY_REFILL_SHARE * p["days_supply_a"]).clip(lower=EARLY_REFILL_DAYS)
    return p[left > allowance]


def detect(frames: Frames) -> list[Hit]:
    d = _windows(frames)
    if d.empty:
        return []
    pairs = _overlaps(d)
    if pairs.empty:
        return []
    involved = set(pairs["seq_a"]) | set(pairs["seq_b"])
    # For each later collection: the most of another facility's supply it still had in hand.
    in_hand = pairs.groupby("seq_b").agg(days_left=("days_left", "max"), share_left=("share_left", "max"))
    flagged = d[d["seq"].isin(involved)].join(in_hand, on="seq").sort_values(["health_card_id", "item_code",
                                                                              "day", "seq"])
    hits: list[Hit] = []
    for (card, _item), g in flagged.groupby(["health_card_id", "item_code"], sort=True):
        for episode in _episodes(g):
            hits.append(_hit(card, episode))
    return hits


def _episodes(g: pd.DataFrame) -> list[pd.DataFrame]:
    """Split one patient's flagged collections of an item where every supply had run out, so a
    spree in March and another in June are two findings with stable evidence."""
    out, start, runs_until = [], 0, None
    days = g["day"].tolist()
    ends = g["ends"].tolist()
    for i, (day, end) in enumerate(zip(days, ends)):
        if runs_until is not None and day >= runs_until:
            out.append(g.iloc[start:i])
            start, runs_until = i, None
        runs_until = end if runs_until is None else max(runs_until, end)
    out.append(g.iloc[start:])
    return [e for e in out if e["facility_code"].nunique() > 1]


def _hit(card: str, g: pd.DataFrame) -> Hit:
    first = g.iloc[0]
    facilities = list(dict.fromkeys(g["facility_code"]))
    later = g[g["share_left"].notna()]
    extra = float(later["share_left"].sum())
    score = squash(extra, half=0.5, floor=0.55, ceiling=0.97)
    span_days = (g["day"].max() - g["day"].min()).days
    within = (msg("on the same day") if span_days == 0
              else nmsg("within %(n)s day", "within %(n)s days", n=count(span_days)))
    supplies = sorted({int(x) for x in g["days_supply"]})
    supply = join([count(x) for x in supplies], "/")
    users = join(sorted(set(g["recorded_by"])), ",")
    return Hit(
        NAME, "patient", card, first["facility_code"], tuple(g["entry_id"]), score,
        msg("Patient %(card)s collected %(qty)s of %(item)s in %(dispensings)s at %(facilities)s (%(codes)s) "
            "%(within)s, from %(date)s, on %(supply)s-day supplies: %(later)s of them while a supply from another "
            "facility still had up to %(days)s to run (recorded by %(users)s).", card=code(card),
            qty=quantity(g['quantity'].sum(), first['unit']), item=code(first['item_name']),
            dispensings=nmsg("%(n)s dispensing", "%(n)s dispensings", n=count(len(g))),
            facilities=nmsg("%(n)s facility", "%(n)s facilities", n=count(len(facilities))),
            codes=join(facilities, ","), within=within, date=day(g['day'].min()), supply=supply,
            later=count(len(later)),
            days=nmsg("%(n)s day", "%(n)s days", n=count(int(later['days_left'].max()))), users=users),
        {"dispensings": len(g), "facilities": facilities, "days_left": int(later["days_left"].max()),
         "extra_supplies": round(extra, 2)},
    )
