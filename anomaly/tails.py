"""Empirical tails: how much of what a detector examined is at least as extreme as a finding.

A detector's threshold says where a finding starts; it says nothing of how common findings of that
size are in the ledger being read. A 40% count shortfall where every other count is within 5% is
one in thousands; a 3x fill where pharmacists routinely give twice the prescription (whole bottles)
is one of hundreds. ``share_at_least`` measures that on the detector's whole population, the
examined entries that were not flagged included, so the figure adapts to the ledger and needs no
threshold fitted elsewhere. anomaly.cases takes it as the finding's probability (``details["tail"]``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def share_at_least(population: pd.Series, values, groups_population: pd.Series | None = None,
                   groups: list | None = None, total: int | None = None) -> np.ndarray:
    """For each value: the share of ``population`` at or above it (within the same group when
    groups are given), out of ``total`` (default: the whole population, or with groups the finding's
    own group). At least one, since the finding itself is one of them."""
    values = np.asarray(values, dtype="float64")
    pop = pd.to_numeric(population, errors="coerce").astype("float64")
    if len(values) == 0:
        return np.ones(0)
    if groups is None:
        ordered = np.sort(pop.dropna().to_numpy())
        above = len(ordered) - np.searchsorted(ordered, values - 1e-9, side="left")
        n = np.full(len(values), float(total if total is not None else len(pop)))
    else:
        by_group = {k: np.sort(g.dropna().to_numpy()) for k, g in pop.groupby(groups_population.to_numpy())}
        empty = np.empty(0)
        above = np.array([len(by_group.get(k, empty)) - np.searchsorted(by_group.get(k, empty), v - 1e-9,
                                                                         side="left")
                          for k, v in zip(groups, values)], dtype="float64")
        # Without a total, each group is its own denominator: the share of the finding's context.
        n = (np.full(len(values), float(total)) if total is not None
             else np.array([max(len(by_group.get(k, empty)), 1) for k in groups], dtype="float64"))
    n = np.maximum(n, 1.0)
    return np.clip(np.maximum(above, 1) / n, 1.0 / n, 1.0)
