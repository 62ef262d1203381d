"""Requisition scenarios on a generated data set, with their ground truth.

Requisitions are not part of the data contract's CSV files, so they are made after a generated set
is imported: every facility with a supplying store prepares and submits its requisition for the
last whole month of the ledger through the real domain (stock.requisitions), asking for about what
the ledger suggests (``noise``: how far ordinary requests stray from the suggestion, and how often
an ordinary facility makes one emergency order). Two kinds of leakage are injected, and named in
the returned truth:

- ``over_request``: one facility asks for several months of use beyond its maximum on a few items;
- ``emergency_spree``: one facility orders in emergency three times in a week.

(Stock received and never consumed cannot be injected here: the generated ledger's later
dispensing is already written. tests/anomaly/test_requisition_detector.py covers it by hand.)

``score`` ranks the detector's findings and gives recall and average precision against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stock.models import Facility, LedgerEntry
from stock.requisitions import flow
from stock.requisitions.figures import add_months, month_start
from stock.requisitions.prepare import prepare

NOISE = {"low": (0.9, 1.2, 0.0), "high": (0.7, 1.8, 0.3)}
"""profile: (lowest and highest share of the suggestion an ordinary request asks for, chance that an
ordinary facility makes one emergency order)."""


@dataclass(frozen=True)
class Incident:
    scenario: str
    facility_code: str
    item_code: str | None = None

    def matches(self, scenario: str, facility_code: str, item_code: str | None) -> bool:
        return (self.scenario, self.facility_code) == (scenario, facility_code) and \
            (self.item_code is None or self.item_code == item_code)


def inject(session: Session, *, seed: int, noise: str = "low") -> list[Incident]:
    """Make the month's requisitions of every supplied facility, with the two injected scenarios."""
    rng = np.random.default_rng(seed)
    low, high, emergency_chance = NOISE[noise]
    last = session.scalar(select(func.max(LedgerEntry.occurred_at)))
    end = month_start(last)
    period = add_months(end, -1).strftime("%Y-%m")
    now = end + timedelta(days=1, hours=8)
    supplied = list(session.scalars(select(Facility).where(Facility.parent_id.is_not(None)).order_by(Facility.code)))
    greedy, spree = (supplied[i] for i in rng.choice(len(supplied), size=2, replace=False))
    truth: list[Incident] = []
    for fac in supplied:
        req = prepare(session, fac, by="gen", period=period, now=now)
        views = [v for v in flow.lines(session, req) if v.line.amc > 0]
        decisions = []
        if fac is greedy:
            for v in rng.choice(views, size=min(3, len(views)), replace=False) if views else []:
                months = Decimal(str(round(float(rng.uniform(3, 8)), 1)))
                qty = (v.line.suggested + v.line.amc * months).quantize(Decimal(1), ROUND_CEILING)
                decisions.append(flow.Decision(v.item.code, qty, "expected demand"))
                truth.append(Incident("over_request", fac.code, v.item.code))
        for v in views:
            if fac is greedy and any(d.item_code == v.item.code for d in decisions):
                continue
            share = Decimal(str(round(float(rng.uniform(low, high)), 2)))
            qty = (max(v.line.suggested, Decimal(1)) * share).quantize(Decimal(1), ROUND_CEILING)
            if qty != v.line.suggested:
                decisions.append(flow.Decision(v.item.code, qty, "rounded to cartons"))
        flow.change(session, req, decisions, by="gen", now=now)
        flow.submit(session, req, by="gen", now=now)
        orders = 3 if fac is spree else int(rng.random() < emergency_chance)
        for k in range(orders):
            at = now + timedelta(days=1 + 2 * k)
            emergency = prepare(session, fac, by="gen", emergency=True, now=at)
            flow.submit(session, emergency, by="gen", now=at)
        if fac is spree:
            truth.append(Incident("emergency_spree", fac.code))
    session.flush()
    return truth


SCENARIO_OF_CASE = {"over-request": "over_request", "emergencies": "emergency_spree"}


def score(hits, truth: list[Incident]) -> tuple[float, float]:
    """(recall, average precision) of ``hits`` ranked by score against ``truth``."""
    ranked = sorted(hits, key=lambda h: -h.score)
    found: set[Incident] = set()
    precisions = []
    for rank, hit in enumerate(ranked, start=1):
        kind = SCENARIO_OF_CASE.get(hit.case.split(":")[0])
        facility, _, item = hit.subject_id.partition(":")
        match = next((i for i in truth if i not in found and i.matches(kind, facility, item or None)), None)
        if match is not None:
            found.add(match)
            precisions.append(len(found) / rank)
    recall = len(found) / len(truth) if truth else 1.0
    return recall, (sum(precisions) / len(truth) if truth else 1.0)


__all__ = ["Incident", "NOISE", "inject", "score"]
