"""Naive detectors that Dawa's own are measured against, in the same evaluation run.

A figure such as "recall 0.9" says little on its own: it could be what any outlier test on
dispense quantities would reach. Each baseline here is what a competent analyst would try first
with no knowledge of how medicines leak, so the gap between it and Dawa is the value the
detectors add. They are deliberately plain (no tuning, no domain rules) but not handicapped: each
ranks its findings, and the learned one ranks every dispense, which can only help its scores.

A baseline returns a ranking: evidence tuples (one dispense entry each), most suspicious first,
in a deterministic order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.features import Frames

MODIFIED_Z_THRESHOLD = 3.5
# Iglewicz and Hoaglin's constants: 0.6745 makes the MAD comparable to a standard deviation under
# normality; 1.253314 does the same for the mean absolute deviation, used when the MAD is zero
# (an item nearly always dispensed in the same pack size).
_MAD_SCALE = 0.6745
_MEAN_AD_SCALE = 1.253314

Ranking = list[tuple[str, ...]]


def modified_z(frames: Frames, threshold: float = MODIFIED_Z_THRESHOLD) -> Ranking:
    """Dispenses whose quantity is an outlier within its item (modified z-score above
    ``threshold``), largest first. Only the upper tail: dispensing less than usual is not leakage,
    and counting it would only dilute the baseline."""
    d = frames.dispenses[["seq", "entry_id", "item_code", "quantity"]]
    if d.empty:
        return []
    z = _modified_z(d["quantity"].to_numpy(dtype="float64"), d["item_code"].to_numpy())
    out = pd.DataFrame({"seq": d["seq"].to_numpy(), "entry_id": d["entry_id"].to_numpy(), "z": z})
    out = out[out["z"] > threshold].sort_values(["z", "seq"], ascending=[False, True], kind="stable")
    return [(e,) for e in out["entry_id"]]


def _modified_z(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame({"g": groups, "x": values})
    median = frame.groupby("g")["x"].transform("median")
    dev = (frame["x"] - median).abs()
    mad = dev.groupby(frame["g"]).transform("median")
    mean_ad = dev.groupby(frame["g"]).transform("mean")
    spread = np.where(mad > 0, mad / _MAD_SCALE, mean_ad * _MEAN_AD_SCALE)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(spread > 0, (frame["x"] - median) / spread, 0.0)
    return np.asarray(z, dtype="float64")


def isolation_forest(frames: Frames, random_state: int = 0) -> Ranking:
    """Every dispense ranked by a default IsolationForest's anomaly score on raw per-dispense
    features: quantity, local hour, controlled, and the item (as an ordinal code)."""
    from sklearn.ensemble import IsolationForest

    d = frames.dispenses[["seq", "entry_id", "item_code", "quantity", "local_hour", "controlled"]]
    if d.empty:
        return []
    item_codes = pd.Categorical(d["item_code"], categories=sorted(d["item_code"].unique())).codes
    x = np.column_stack([d["quantity"].to_numpy(dtype="float64"), d["local_hour"].to_numpy(dtype="float64"),
                         d["controlled"].to_numpy(dtype="float64"), item_codes.astype("float64")])
    forest = IsolationForest(random_state=random_state).fit(x)
    anomaly = -forest.score_samples(x)
    out = pd.DataFrame({"seq": d["seq"].to_numpy(), "entry_id": d["entry_id"].to_numpy(), "a": anomaly})
    out = out.sort_values(["a", "seq"], ascending=[False, True], kind="stable")
    return [(e,) for e in out["entry_id"]]


BASELINES = {
    "z-score": modified_z,
    "isolation forest": isolation_forest,
}
"""Name shown in the report -> function from the scan's frames to a ranking."""
