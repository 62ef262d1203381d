"""Stock written off long before its lot expires.

An ``expired`` write-off of a lot with months of shelf life left is impossible on its face: the
reason is a cover for stock that went elsewhere. A ``damaged`` or ``lost`` write-off of a
long-dated lot happens honestly (a dropped bottle, a crushed box), but honest breakage is a pack
or so; writing off many times what the facility hands out in one go, and weeks of its usual use,
is how diverted stock is made to disappear from the books. Recalls and reported thefts are left
out: a recall removes a lot whatever its expiry, and a theft report is already an alarm raised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from stock.messages import code, count, day, msg, num, pmsg
from stock.messages import qty as quantity

NAME = "writeoffs"

NOT_JUDGED = frozenset({"recalled", "theft"})
"""Reasons this detector leaves alone (see the module's docstring)."""
MIN_MOVEMENTS = 3.0
"""A damaged or lost write-off is large when it is at least this many times the facility's
median dispensing or dispatch of the item (honest breakage is about one)..."""
MIN_DAYS_OF_USE = 5.0
"""... and at least a working week of the facility's average use of the item (so a busy store's
breakage of a few cartons, a fraction of one day's dispatches, stays silent)."""


def _usual_use(frames: Frames) -> pd.DataFrame:
    """Per facility and item: the median outgoing movement and the average daily outflow.

    Outflow is what a facility hands on: dispensings at a clinic, dispatches at a store. The
    average is over the facility's own span in the ledger, so a facility that joined late is
    not made to look idle.
    """
    e = frames.live
    span = e.groupby("facility_code")["occurred_at"].agg(["min", "max"])
    days = ((span["max"] - span["min"]).dt.total_seconds() / 86400.0).clip(lower=30.0).rename("span_days")
    out = e[e["kind"].isin(["dispense", "transfer_out"])]
    use = out.groupby(["facility_code", "item_code"])["quantity"].agg(["sum", "median"])
    use = use.join(days, on="facility_code")
    use["daily"] = use["sum"] / use["span_days"]
    return use[["median", "daily"]].rename(columns={"median": "usual_movement"})


def _why(why: str):
    """The loss reason as written off: the known ones in the reader's words, others as typed."""
    known = {"expired": pmsg("loss reason", "expired"), "damaged": pmsg("loss reason", "damaged"),
             "lost": pmsg("loss reason", "lost"), "theft": pmsg("loss reason", "theft"),
             "recalled": pmsg("loss reason", "recalled"), "": msg("a loss with no reason")}
    return known.get(why) or code(why)


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    loss = frames.of_kind("loss")
    loss = loss[loss["expiry_date"].notna()]
    if loss.empty:
        return []
    loss = loss.assign(days_left=(loss["expiry_date"] - loss["local_date"]).dt.days,
                       why=loss["reason"].str.strip().str.lower())
    loss = loss[(loss["days_left"] > s.writeoff_min_days_to_expiry) & ~loss["why"].isin(NOT_JUDGED)]
    if loss.empty:
        return []
    loss = loss.join(_usual_use(frames), on=["facility_code", "item_code"])
    with np.errstate(divide="ignore", invalid="ignore"):
        movements = (loss["quantity"] / loss["usual_movement"]).fillna(np.inf)
        days_of_use = (loss["quantity"] / loss["daily"]).fillna(np.inf)
    loss = loss.assign(movements=movements, days_of_use=days_of_use)
    expired = loss["why"] == "expired"
    large = (~expired & (loss["quantity"] > s.count_tolerance_units)
             & (loss["movements"] >= MIN_MOVEMENTS) & (loss["days_of_use"] >= MIN_DAYS_OF_USE))
    hits: list[Hit] = []
    for row in loss[expired | large].sort_values("seq").itertuples():
        what = msg("%(qty)s of %(item)s lot %(lot)s written off as %(why)s at %(facility)s on %(date)s by %(user)s, "
                   "%(days)s days before the lot expires on %(expiry)s", qty=quantity(row.quantity, row.unit),
                   item=code(row.item_name), lot=code(row.lot_number), why=_why(row.why),
                   facility=code(row.facility_code), date=day(row.local_date), user=code(row.recorded_by),
                   days=count(row.days_left), expiry=day(row.expiry_date))
        if np.isfinite(row.days_of_use):
            use = msg("%(days)s days of the facility's usual use", days=num(row.days_of_use, 0))
        else:
            use = msg("an item the facility has not dispensed or sent out")
        if row.why == "expired":
            score = squash(row.days_left / s.writeoff_min_days_to_expiry - 1, half=2, floor=0.8, ceiling=0.97)
            reason_text = msg("%(what)s: an expiry write-off of a lot that has not expired (%(use)s).", what=what, use=use)
        else:
            # Only as sure as the weaker of the two measures of size; with no use to measure
            # against, only weakly sure.
            excess = (min(row.movements / MIN_MOVEMENTS, row.days_of_use / MIN_DAYS_OF_USE) - 1
                      if np.isfinite(row.days_of_use) and np.isfinite(row.movements) else 0.5)
            score = squash(excess, half=2, floor=0.5, ceiling=0.9)
            reason_text = (msg("%(what)s: %(use)s, %(times)s times its usual dispensing or dispatch of %(usual)s.",
                               what=what, use=use, times=num(row.movements, 0), usual=num(row.usual_movement))
                           if np.isfinite(row.movements) else msg("%(what)s: %(use)s.", what=what, use=use))
        hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,), score, reason_text,
                        {"quantity": row.quantity, "reason": row.why, "days_to_expiry": int(row.days_left),
                         "days_of_use": None if not np.isfinite(row.days_of_use) else round(row.days_of_use, 1),
                         "usual_movement": None if pd.isna(row.usual_movement) else row.usual_movement}))
    return hits
