"""Learned: dispensings, and facility-months, that an IsolationForest finds unlike the rest.

Rules catch the leakage someone thought of; this finds combinations nobody wrote a rule for: a
large quantity of a controlled item at an hour when colleagues never work, for a patient who
has already collected it twice this month. Two forests are grown (``random_state`` fixes them):

- one on every dispensing, described by how its quantity compares with the item's usual one, the
  share of its prescription it fills, how rarely colleagues at the facility work at that hour,
  whether the item is controlled, how many times the patient collected the item in the last 30
  days, at how many facilities the patient was served, and how close the lot was to expiry;
- one on every facility-month, described by how its dispensings per patient, controlled share,
  off-hours share, share without a prescription, share to patients new to the facility and usual
  quantity compare with facilities of the same kind that month.

A forest calls at most ``isolation_contamination`` of the rows unusual. Being unusual is not
being suspicious (an unusually small quantity, a lot with years to run), so each such row is
explained by its features that are rare in the direction leakage takes: the share of all rows at
least as extreme on that feature must be at most EXPLAIN_TAIL. Rows with no such feature are not
flagged; the others carry the rarest (at most three) in their reason. Scores follow the forest's
ranking: the most unusual row of the contamination share gets 0.85, the last one 0.5, which keeps
this detector below the precise rules and in line with the statistical ones.

A forest needs enough rows to learn what is usual: fewer than MIN_ROWS and it is not grown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from anomaly.detectors.users import off_hours
from anomaly.features import Frames
from anomaly.hits import Hit
from anomaly.wording import other_kind
from stock.messages import code, count, day, join, msg, nmsg, num, ordinal, pct
from stock.messages import month as year_month
from stock.messages import qty as quantity

NAME = "isolation"

N_ESTIMATORS = 100
MIN_ROWS = 200
"""Rows below which a forest has too little to learn what is usual, and is not grown."""
EXPLAIN_TAIL = 0.01
"""A feature explains a row when at most this share of rows is at least as high on it."""
MAX_REASONS = 3
EVIDENCE_CAP = 50
"""A facility-month flag cites at most this many dispensings, so that it stays reviewable."""
SCORE_TOP, SCORE_EDGE = 0.85, 0.5
WINDOW_DAYS = 30


# ---------------------------------------------------------------- per dispensing

def dispensing_features(d: pd.DataFrame, prescriptions: pd.DataFrame) -> pd.DataFrame:
    """The features of each dispensing, vectorised over the whole ledger."""
    f = pd.DataFrame(index=d.index)
    f["quantity_x"] = _times_usual(d["quantity"], d["item_code"])
    f["prescribed"] = np.nan
    if len(prescriptions):
        rx = prescriptions.drop_duplicates("prescription_id").set_index("prescription_id")["quantity"]
        f["prescribed"] = d["prescription_id"].map(rx).where(lambda q: q > 0)
    f["prescription_x"] = (d["quantity"] / f["prescribed"]).fillna(1.0)
    f["hour_share"] = _colleague_hour_share(d)
    f["hour_rarity"] = -np.log10(f["hour_share"])
    f["controlled"] = d["controlled"].astype(float)
    visits = _visits(d)
    f["patient_30d"] = visits["count"]
    f["patient_30d_x"] = _times_usual(visits["amount"], d["item_code"])
    f["other_facilities_30d"] = visits["count"] - visits["here"]
    days = (d["expiry_date"] - d["local_date"]).dt.days.astype(float)
    f["expired_days"] = (-days).clip(lower=0).fillna(0.0)
    return f


def _times_usual(value: pd.Series, item: pd.Series) -> pd.Series:
    usual = value.groupby(item).transform("median")
    return (value / usual.where(usual > 0)).fillna(1.0).astype(float)


def _colleague_hour_share(d: pd.DataFrame) -> pd.Series:
    """The share of the user's colleagues' dispensings at the facility made within an hour of that
    local hour (Laplace-smoothed), so that a night shift colleagues also work stays ordinary."""
    hour = d["local_hour"].to_numpy(np.int64)
    fac = pd.factorize(d["facility_code"])[0]
    user = d.groupby(["facility_code", "recorded_by"], sort=False).ngroup().to_numpy()

    def banded(code: np.ndarray) -> np.ndarray:
        counts = np.zeros((code.max() + 1, 24))
        np.add.at(counts, (code, hour), 1)
        return counts + np.roll(counts, 1, axis=1) + np.roll(counts, -1, axis=1)

    fac_band, user_band = banded(fac), banded(user)
    theirs = fac_band[fac, hour] - user_band[user, hour]
    total = np.bincount(fac)[fac] - np.bincount(user)[user]
    return pd.Series((theirs + 1) / (3 * total + 8), index=d.index, dtype=float)


def _visits(d: pd.DataFrame) -> pd.DataFrame:
    """For each dispensing, the patient's visits for the item in the last WINDOW_DAYS (this one
    included), at any facility and at this one, and the quantity they took.

    A visit is one patient, item, facility and moment: a fill taken from two lots is two ledger
    rows but one visit.
    """
    keys = ["health_card_id", "item_code", "facility_code", "occurred_at"]
    rows = d.loc[d["health_card_id"] != "", keys + ["quantity", "seq"]]
    out = pd.DataFrame({"count": 1.0, "here": 1.0, "amount": d["quantity"].astype(float)}, index=d.index)
    if rows.empty:
        return out
    v = rows.groupby(keys, sort=False).agg(quantity=("quantity", "sum"), seq=("seq", "min")).reset_index()
    t = v["occurred_at"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]")
    t = t.astype(np.int64)
    v["count"], v["amount"] = _window(v, t, ["health_card_id", "item_code"])
    v["here"], _ = _window(v, t, ["health_card_id", "item_code", "facility_code"])
    back = rows[keys].merge(v, on=keys, how="left")
    out.loc[rows.index, ["count", "here", "amount"]] = back[["count", "here", "amount"]].to_numpy()
    return out


def _window(v: pd.DataFrame, t: np.ndarray, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each visit, how many visits share its keys within the last WINDOW_DAYS (this one
    included) and their total quantity. Sorting once and searching each window's start keeps it
    linear in the ledger's size."""
    key = v.groupby(keys, sort=False).ngroup().to_numpy(np.int64)
    t = t - t.min()
    window = WINDOW_DAYS * 86_400
    # Keys and times in one sortable number, the keys spaced wider than any window.
    combined = key * (int(t.max()) + window + 1) + t
    order = np.lexsort((v["seq"].to_numpy(), combined))
    ordered = combined[order]
    start = np.searchsorted(ordered, ordered - window, side="left")
    csum = np.concatenate([[0.0], np.cumsum(v["quantity"].to_numpy(np.float64)[order])])
    n = np.arange(len(ordered))
    count = np.empty(len(order))
    total = np.empty(len(order))
    count[order] = n - start + 1
    total[order] = csum[n + 1] - csum[start]
    return count, total


# The forest's features, and for those that can explain a row, how far past ordinary a value
# must be before it is named as the reason.
DISPENSING_FEATURES = ("quantity_x", "prescription_x", "hour_rarity", "controlled", "patient_30d_x",
                       "other_facilities_30d", "expired_days")
DISPENSING_FLOOR = {"quantity_x": 3.0, "prescription_x": 1.5, "hour_rarity": -np.log10(0.005),
                    "patient_30d_x": 3.0, "other_facilities_30d": 2.0, "expired_days": 1.0}


def _dispensing_phrase(feature: str, f: pd.Series, r):
    if feature == "quantity_x":
        return msg("quantity %(times)sx the usual for this item", times=_times(f['quantity_x']))
    if feature == "prescription_x":
        return msg("%(times)sx its prescription for %(prescribed)s", times=_times(f['prescription_x']),
                   prescribed=num(f['prescribed']))
    if feature == "hour_rarity":
        return msg("at %(hour)s:00, when colleagues at %(facility)s record %(share)s of their dispensings "
                   "(within the hour either side)", hour=code(f"{r.local_hour:02d}"),
                   facility=code(r.facility_code), share=pct(f['hour_share']))
    if feature == "patient_30d_x":
        return msg("the patient's %(nth)s visit for it in %(days)s days, %(times)sx the usual 30-day amount",
                   nth=ordinal(int(f['patient_30d'])), days=count(WINDOW_DAYS), times=_times(f['patient_30d_x']))
    if feature == "other_facilities_30d":
        return nmsg("%(n)s other visit for it by the patient to other facilities in %(days)s days",
                    "%(n)s other visits for it by the patient to other facilities in %(days)s days",
                    n=count(int(f['other_facilities_30d'])), days=count(WINDOW_DAYS))
    return nmsg("from a lot that had expired %(n)s day before", "from a lot that had expired %(n)s days before",
                n=count(int(f['expired_days'])))


# ---------------------------------------------------------------- per facility-month

def facility_month_features(d: pd.DataFrame, start: int, end: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features of each facility-month against the median of its kind that month, and the
    per-dispensing marks its evidence is chosen by."""
    first_seen = d.groupby(["facility_code", "health_card_id"])["occurred_at"].transform("min")
    marks = pd.DataFrame({
        "facility_code": d["facility_code"], "month": d["month"],
        "controlled": d["controlled"].astype(float),
        "off_hours": off_hours(d["local_hour"], start, end).astype(float),
        "no_prescription": (d["prescription_id"] == "").astype(float),
        # Everyone is new in the ledger's first month.
        "new_patient": ((d["health_card_id"] != "") & (d["occurred_at"] == first_seen)
                        & (d["month"] > d["month"].min())).astype(float),
        "quantity_x": _times_usual(d["quantity"], d["item_code"]),
        "quantity": d["quantity"],
    }, index=d.index)
    g = marks.groupby(["facility_code", "month"], sort=True)
    fm = g[list(_SHARE_OF) + ["quantity_x"]].mean()
    served = d[d["health_card_id"] != ""].groupby(["facility_code", "month"])["health_card_id"].nunique()
    fm["per_patient"] = g.size() / served.reindex(fm.index).fillna(0).clip(lower=1)
    fm = fm.reset_index()
    kinds = d.drop_duplicates("facility_code").set_index("facility_code")["facility_kind"]
    fm["facility_kind"] = fm["facility_code"].map(kinds)
    peers = fm.groupby(["facility_kind", "month"])
    for col in FACILITY_FLOOR:
        fm[f"{col}_median"] = peers[col].transform("median")
        if col in _SHARE_OF:
            fm[f"{col}_rel"] = fm[col] - fm[f"{col}_median"]
        else:
            fm[f"{col}_rel"] = fm[col] / fm[f"{col}_median"].where(fm[f"{col}_median"] > 0)
            fm[f"{col}_rel"] = fm[f"{col}_rel"].fillna(1.0)
    return fm, marks


_SHARE_OF = {"controlled": "of dispensings of controlled items", "off_hours": "of dispensings off-hours",
             "no_prescription": "of dispensings without a prescription",
             "new_patient": "of dispensings to patients new to the facility"}
FACILITY_FLOOR = {"per_patient": 1.5, "controlled": 0.10, "off_hours": 0.05, "no_prescription": 0.15,
                  "new_patient": 0.15, "quantity_x": 1.5}
"""Shares are judged by how many points above the kind's median they are, the others by multiples."""


def _facility_phrase(feature: str, row):
    value, median = getattr(row, feature), getattr(row, f"{feature}_median")
    if feature == "controlled":
        return msg("%(share)s of dispensings of controlled items (median %(median)s)", share=pct(value),
                   median=pct(median))
    if feature == "off_hours":
        return msg("%(share)s of dispensings off-hours (median %(median)s)", share=pct(value), median=pct(median))
    if feature == "no_prescription":
        return msg("%(share)s of dispensings without a prescription (median %(median)s)", share=pct(value),
                   median=pct(median))
    if feature == "new_patient":
        return msg("%(share)s of dispensings to patients new to the facility (median %(median)s)",
                   share=pct(value), median=pct(median))
    if feature == "per_patient":
        return msg("%(value)s dispensings per patient served (median %(median)s)", value=num(value, 2),
                   median=num(median, 2))
    return msg("quantities %(value)sx the items' usual on average (median %(median)sx)", value=num(value, 1),
               median=num(median, 1))


# ---------------------------------------------------------------- shared

def _forest_rank(x: np.ndarray, contamination: float, random_state: int) -> np.ndarray:
    """Anomaly scores (higher = more unusual) from a forest grown with the scan's random_state."""
    forest = IsolationForest(n_estimators=N_ESTIMATORS, contamination=contamination,
                             random_state=random_state, n_jobs=1)
    forest.fit(x)
    return -forest.score_samples(x)


def _unusual(x: pd.DataFrame, s) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the rows the forest calls unusual, most unusual first, and their scores.

    The scores are by rank: the contamination share is spread evenly from SCORE_TOP down to
    SCORE_EDGE, ties broken by row order so that a re-scan ranks the same way.
    """
    k = int(np.floor(s.isolation_contamination * len(x)))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    unusualness = _forest_rank(x.to_numpy(np.float64), s.isolation_contamination, s.random_state)
    order = np.lexsort((np.arange(len(x)), -unusualness))[:k]
    return order, SCORE_TOP - (SCORE_TOP - SCORE_EDGE) * np.arange(k) / max(k - 1, 1)


def _explain(x: pd.DataFrame, rows: np.ndarray, floors: dict[str, float]) -> list[list[str]]:
    """For each row, the features that make it suspicious and not just unusual, rarest first: past
    their floor, and with at most EXPLAIN_TAIL of all rows at least as high."""
    tails = {}
    for col in floors:
        v = x[col].to_numpy(np.float64)
        # The share of rows at least as high as each of the chosen rows' values.
        sorted_v = np.sort(v)
        tails[col] = (len(v) - np.searchsorted(sorted_v, v[rows], side="left")) / len(v)
    out = []
    for j, pos in enumerate(rows):
        found = [(tails[c][j], i, c) for i, c in enumerate(floors)
                 if x[c].iat[pos] >= floors[c] and tails[c][j] <= EXPLAIN_TAIL]
        out.append([c for _, _, c in sorted(found)[:MAX_REASONS]])
    return out


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    d = frames.dispenses.sort_values("seq")
    if len(d) < MIN_ROWS:
        return []
    return _dispensing_hits(d, frames.prescriptions, s) + _facility_hits(d, s)


def _dispensing_hits(d: pd.DataFrame, prescriptions: pd.DataFrame, s) -> list[Hit]:
    f = dispensing_features(d, prescriptions)
    rows, scores = _unusual(f[list(DISPENSING_FEATURES)], s)
    hits = []
    for pos, score, why in zip(rows, scores, _explain(f, rows, DISPENSING_FLOOR)):
        if not why:
            continue
        r = d.iloc[pos]
        fr = f.iloc[pos]
        reason = msg("Unusual dispensing: %(qty)s of %(item)s%(controlled)s by %(user)s at %(facility)s on "
                     "%(date)s, %(why)s.", qty=quantity(r.quantity, r.unit), item=code(r.item_name),
                     controlled=msg(" (controlled)") if r.controlled else join([]), user=code(r.recorded_by),
                     facility=code(r.facility_code), date=day(r.local_date),
                     why=join([_dispensing_phrase(w, fr, r) for w in why], ";"))
        details = {k: round(float(fr[k]), 4) for k in DISPENSING_FEATURES}
        details["explained_by"] = why
        hits.append(Hit(NAME, "entry", r.entry_id, r.facility_code, (r.entry_id,), round(float(score), 4),
                        reason, details))
    return hits


def _facility_hits(d: pd.DataFrame, s) -> list[Hit]:
    fm, marks = facility_month_features(d, s.off_hours_start, s.off_hours_end)
    if len(fm) < MIN_ROWS:
        return []
    rel = fm[[f"{c}_rel" for c in FACILITY_FLOOR]].rename(columns=lambda c: c[:-4])
    rows, scores = _unusual(rel, s)
    hits = []
    for pos, score, why in zip(rows, scores, _explain(rel, rows, FACILITY_FLOOR)):
        if not why:
            continue
        r = fm.iloc[pos]
        month = f"{r.month:%Y-%m}"
        mine = marks[(marks["facility_code"] == r.facility_code) & (marks["month"] == r.month)]
        top = why[0]
        if top in _SHARE_OF:
            pool = mine[mine[top] > 0].sort_values("quantity", ascending=False, kind="stable")
        else:
            pool = mine.sort_values("quantity_x" if top == "quantity_x" else "quantity", ascending=False,
                                    kind="stable")
        ids = tuple(d.loc[pool.index[:EVIDENCE_CAP]].sort_values("seq")["entry_id"])
        cited = (msg("; the %(cap)s largest of its %(n)s such dispensings are cited", cap=count(EVIDENCE_CAP),
                     n=count(len(pool))) if len(pool) > EVIDENCE_CAP else join([]))
        reason = msg("Unusual month at %(facility)s in %(month)s against %(others)s that month: %(why)s%(cited)s.",
                     facility=code(r.facility_code), month=year_month(r.month), others=other_kind(r.facility_kind),
                     why=join([_facility_phrase(w, r) for w in why], ";"), cited=cited)
        details = {c: round(float(r[c]), 4) for c in FACILITY_FLOOR}
        details.update(month=month, explained_by=why)
        hits.append(Hit(NAME, "facility", f"{r.facility_code}:{month}", r.facility_code, ids,
                        round(float(score), 4), reason, details))
    return hits


def _times(x: float):
    return num(x, 0 if x >= 10 else 1)
