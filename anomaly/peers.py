"""A user measured against colleagues: how many of their dispensings have a mark (over-filled,
out of hours, no prescription to a repeat patient) against how many the colleagues' rate predicts.

The colleagues' rate is taken in a context where it means the same thing (the same item and
prescribed quantity, the same facility's hours...), leaving the user out of their own yardstick;
the user's expected count is the sum of those rates over their own dispensings. The chance of at
least the observed count is a Poisson tail: a user doing what colleagues do in the same situation
gets a large chance however often they do it, and one doing it alone gets a tiny one. A detector
reports that chance with the number of users it tested; anomaly.cases turns both into a surprise,
so no threshold of one data set decides what is flagged first.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy.special import pdtrc

from anomaly.hits import Hit

USER = ["facility_code", "recorded_by"]
PRIOR = 20.0
"""Weight, in dispensings, of the ledger-wide marked share added to each context's: a context where
no colleague was ever marked does not make a single mark impossible, and a small one leans on the
whole ledger."""
MIN_MARKED = 2
MAX_CHANCE = 0.05
"""A user whose count has a larger chance than this is not reported at all (the rank decides the rest)."""


def expected(d: pd.DataFrame, mark: pd.Series, context: list[str], wider: list[str] | None = None,
             yardstick: pd.Series | None = None) -> pd.Series:
    """Per dispensing: the colleagues' marked share in its context, the user left out, leaning
    (by PRIOR dispensings) on the same share in a wider context (facilities of the same kind, say),
    or on the whole ledger's. Only ``yardstick`` rows (default all) count as colleagues' work."""
    keys = list(dict.fromkeys(context + (wider or []) + USER))
    weight = np.ones(len(d)) if yardstick is None else yardstick.astype(float).to_numpy()
    frame = d[keys].assign(_m=mark.astype(float).to_numpy() * weight, _n=weight)

    def others(ctx: list[str]) -> tuple[pd.Series, pd.Series]:
        total = frame.groupby(ctx, sort=False)[["_m", "_n"]].transform("sum")
        own = frame.groupby(list(dict.fromkeys(ctx + USER)), sort=False)[["_m", "_n"]].transform("sum")
        return total["_m"] - own["_m"], total["_n"] - own["_n"]

    overall = (frame["_m"].sum() + 1.0) / (frame["_n"].sum() + 2.0)
    if wider:
        wm, wn = others(wider)
        overall = (wm + PRIOR * overall) / (wn + PRIOR)
    others_m, others_n = others(context)
    return (others_m + PRIOR * overall) / (others_n + PRIOR)


def assess(d: pd.DataFrame, mark: pd.Series, context: list[str], wider: list[str] | None = None,
           floor: pd.Series | None = None) -> pd.DataFrame:
    """Per user, judged against colleagues (see judge). Users clearly out of line in a first pass
    (less than one such user expected among all tested) leave the colleagues' yardstick in a second, so that two such users in one facility do not hide each
    other. ``floor`` is a per-dispensing rate below which the expectation does not go."""
    def once(yardstick):
        rate = expected(d, mark, context, wider, yardstick)
        return judge(d, mark, rate if floor is None else np.maximum(rate, floor))

    first = once(None)
    reported = tail(first)
    reported = reported[reported["chance"] * tested(first) < 1.0]  # only the clear ones leave it
    if reported.empty:
        return first
    who = pd.MultiIndex.from_frame(reported[USER])
    return once(pd.Series(~pd.MultiIndex.from_frame(d[USER]).isin(who), index=d.index))


def judge(d: pd.DataFrame, mark: pd.Series, rate: pd.Series) -> pd.DataFrame:
    """Per user: dispensings, marked, expected marked and the Poisson chance of at least that many."""
    frame = d[USER].assign(marked=mark.astype(float).to_numpy(), expected=rate.to_numpy(), n=1)
    u = frame.groupby(USER, sort=True)[["n", "marked", "expected"]].sum().reset_index()
    u["chance"] = pdtrc(u["marked"] - 1, u["expected"].clip(lower=1e-9))
    u.loc[u["marked"] == 0, "chance"] = 1.0
    return u


def tail(u: pd.DataFrame) -> pd.DataFrame:
    """The users worth reporting, least likely first: one marked dispensing is an event (the
    event detectors' business), a habit takes at least MIN_MARKED."""
    return u[(u["chance"] < MAX_CHANCE) & (u["marked"] >= MIN_MARKED)].sort_values(
        ["chance", "facility_code", "recorded_by"])


def tested(u: pd.DataFrame) -> int:
    return int((u["n"] > 0).sum())


EVIDENCE_CAP = 8
"""Entries a user's case cites: their strongest marked dispensings."""


def population(frames) -> int:
    """Users who dispensed: what a detector of this module's kind looks at (anomaly.cases)."""
    return int(len(frames.dispenses[USER].drop_duplicates()))


def reported(u: pd.DataFrame, marked: pd.DataFrame) -> Iterator[tuple]:
    """Each reported user (a row of ``u``) with their marked dispensings."""
    mine = dict(iter(marked.groupby(USER, sort=False)))
    for row in tail(u).itertuples():
        yield row, mine.get((row.facility_code, row.recorded_by), marked.iloc[:0])


def user_hit(detector: str, row, cited, reason: str, tests: int, **details) -> Hit:
    """A user's case: their chance, what was expected and the evidence, in one shape for every
    population detector."""
    return Hit(detector, "user", row.recorded_by, row.facility_code, tuple(cited)[:EVIDENCE_CAP],
               float(1 - row.chance), reason,
               {"p": float(row.chance), "tests": tests, "marked": int(row.marked),
                "expected": round(float(row.expected), 3), **details})
