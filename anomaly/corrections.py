"""Corrections understood: an outgoing movement netted against the adjustment that undoes it.

A pharmacist keys 280 for 28 and, minutes or days later, posts an ``adjustment`` of +252 with the
reason "correction"; a store records 200 sent, ships 163 and adds 37 back. The stock is right
again and nothing left the shelf that the books do not show. The contract's ``reverses`` column
names an exact inverse (frames already drop both sides of it); a partial correction is an ordinary
adjustment without it, so it is matched here: a positive adjustment of the same facility, item and
lot, within ``WINDOW_DAYS`` after an outgoing movement (dispense, loss) that it does not exceed,
nets that movement, and only by its own quantity. A +1 "correction" of an over-fill of
89 excuses one unit: the rest stays in the movement and in every detector's view of it.

Each adjustment nets at most one movement: of the candidates, the one it brings back to a
quantity seen for the item (its prescription, or the sent quantity's arrival), else the latest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW_DAYS = 14
"""An adjustment this long after a movement may still correct it (keying errors found at the
month's count come later, and stay what they look like)."""
OUTGOING = ("dispense", "loss")
"""Shipments are not netted here: a store that ships less than it records and adds the rest back
is reconciled with the route's arrivals (anomaly.detectors.transfers)."""


def net(e: pd.DataFrame, prescriptions: pd.DataFrame) -> pd.DataFrame:
    """Add ``keyed_quantity`` (as recorded), ``corrected_by`` (the netting adjustment's entry id,
    or "") and ``corrects`` (on an adjustment: the movement it nets), and lower ``quantity`` of
    netted movements by the adjustment's amount."""
    e["keyed_quantity"] = e["quantity"]
    e["corrected_by"] = ""
    e["corrects"] = ""
    adj = e[(e["kind"] == "adjustment") & (e["reverses"] == "") & (e["quantity"] > 0)]
    if adj.empty:
        return e
    out = e[e["kind"].isin(OUTGOING) & (e["reverses"] == "") & ~e["reversed"]]
    keys = ["facility_code", "item_code", "lot_number"]
    cand = adj[keys + ["seq", "entry_id", "quantity", "occurred_at"]].merge(
        out[keys + ["seq", "entry_id", "quantity", "occurred_at", "prescription_id"]], on=keys,
        suffixes=("_adj", ""))
    gap = cand["occurred_at_adj"] - cand["occurred_at"]
    cand = cand[(gap >= pd.Timedelta(0)) & (gap <= pd.Timedelta(days=WINDOW_DAYS))
                & (cand["quantity_adj"] < cand["quantity"])]
    if cand.empty:
        return e
    prescribed = (prescriptions.drop_duplicates("prescription_id").set_index("prescription_id")["quantity"]
                  if len(prescriptions) else pd.Series(dtype="float64"))
    left = cand["quantity"] - cand["quantity_adj"]
    cand = cand.assign(inexact=~np.isclose(left, cand["prescription_id"].map(prescribed).fillna(-1.0)),
                       ago=gap)
    # Each adjustment takes its best movement; each movement is netted once (the earliest taker).
    cand = cand.sort_values(["seq_adj", "inexact", "ago", "seq"])
    chosen = cand.drop_duplicates("seq_adj").drop_duplicates("seq")
    pos = e.index[e["seq"].isin(chosen["seq"])]
    by_seq = chosen.set_index("seq")
    seqs = e.loc[pos, "seq"]
    e.loc[pos, "quantity"] = e.loc[pos, "quantity"] - seqs.map(by_seq["quantity_adj"]).to_numpy()
    e.loc[pos, "corrected_by"] = seqs.map(by_seq["entry_id_adj"]).to_numpy()
    back = chosen.set_index("seq_adj")["entry_id"]
    apos = e.index[e["seq"].isin(back.index)]
    e.loc[apos, "corrects"] = e.loc[apos, "seq"].map(back).to_numpy()
    return e
