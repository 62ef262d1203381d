"""Dispensing beyond what was prescribed, or beyond the protocol ceiling for one dispensing.

A prescription's fills add up in time order; the fill that takes the total past the prescribed
quantity (times a tolerance for rounding to whole packs) is flagged, with the running total.
Partial fills and refills (each refill is a prescription of its own) stay under it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.features import Frames
from anomaly.hits import Hit, amount, qty, squash
from anomaly.tails import share_at_least

NAME = "prescriptions"


def _when(row) -> str:
    local = row.occurred_at.tz_convert("UTC") if row.occurred_at.tzinfo else row.occurred_at
    return f"on {row.local_date:%Y-%m-%d} at {row.local_hour:02d}h" if not pd.isna(row.local_date) else f"at {local}"


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    d = frames.dispenses
    hits: list[Hit] = []
    with_rx = d[d["prescription_id"] != ""].sort_values(["occurred_at", "seq"])
    rx = frames.prescriptions
    if len(with_rx) and len(rx):
        m = with_rx.merge(rx[["prescription_id", "health_card_id", "item_code", "quantity", "days_supply"]],
                          on="prescription_id", how="inner", suffixes=("", "_rx"))
        mismatch = (m["health_card_id"] != m["health_card_id_rx"]) | (m["item_code"] != m["item_code_rx"])
        for row in m[mismatch].itertuples():
            hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,), 0.7,
                            f"{amount(row.quantity, row.unit)} of {row.item_name} dispensed to {row.health_card_id} "
                            f"against prescription {row.prescription_id}, which was written for "
                            f"{row.health_card_id_rx} and {row.item_code_rx}; recorded by {row.recorded_by} "
                            f"at {row.facility_code} {_when(row)}.",
                            {"prescription_patient": row.health_card_id_rx, "prescription_item": row.item_code_rx}))
        m = m[~mismatch].copy()
        m["filled"] = m.groupby("prescription_id")["quantity"].cumsum()
        m["ratio"] = m["filled"] / m["quantity_rx"]
        over = m[m["ratio"] > s.over_prescription_ratio]
        # Of the fills of the same item and prescribed quantity, the share that went at least this far
        # past it (anomaly.tails): where a bottle of 50 answers every prescription
        # for 30, a 1.7x fill is the rule; where everyone gives the prescription, it is not.
        context = m["item_code"] + "|" + m["quantity_rx"].astype(str)
        # It must also be large for the ledger as a whole: a lone 1.4x fill where no one else rounded
        # up is a strip, not a theft; the share of all fills at least this far past theirs says so.
        own = share_at_least(m["ratio"], over["ratio"], context, list(context[over.index]))
        over = over.assign(tail=np.maximum(own, share_at_least(m["ratio"], over["ratio"], total=len(d))))
        for row in over.itertuples():
            score = squash(row.ratio - 1.0, half=1.0, floor=0.6, ceiling=0.99)
            earlier = "" if row.filled == row.quantity else f", bringing the total filled to {qty(row.filled)}"
            hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,), score,
                            f"Dispensed {amount(row.quantity, row.unit)} of {row.item_name} against prescription "
                            f"{row.prescription_id} for {qty(row.quantity_rx)}{earlier} ({row.ratio:.1f}x), "
                            f"by user {row.recorded_by} at {row.facility_code} {_when(row)}.",
                            {"dispensed": row.quantity, "filled_total": row.filled,
                             "prescribed": row.quantity_rx, "ratio": round(row.ratio, 3), "tail": row.tail}))
    capped = d[d["max_dispense_quantity"].notna()]
    capped = capped.assign(over_ceiling=capped["quantity"] / capped["max_dispense_quantity"])
    ceiling = capped[capped["quantity"] > capped["max_dispense_quantity"]]
    ceiling = ceiling.assign(tail=share_at_least(capped["over_ceiling"], ceiling["over_ceiling"], capped["item_code"],
                                                 list(ceiling["item_code"]), total=len(d)))
    for row in ceiling.itertuples():
        ratio = row.quantity / row.max_dispense_quantity
        hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,),
                        squash(ratio - 1.0, half=1.0, floor=0.5, ceiling=0.95),
                        f"Dispensed {amount(row.quantity, row.unit)} of {row.item_name} in one dispensing, over the "
                        f"protocol ceiling of {qty(row.max_dispense_quantity)} ({ratio:.1f}x), by user "
                        f"{row.recorded_by} at {row.facility_code} {_when(row)}.",
                        {"dispensed": row.quantity, "ceiling": row.max_dispense_quantity, "ratio": round(ratio, 3),
                         "tail": row.tail}))
    return _one_per_entry(hits)


def _one_per_entry(hits: list[Hit]) -> list[Hit]:
    """A fill both over its prescription and over the ceiling is one finding with both reasons."""
    by_entry: dict[str, list[Hit]] = {}
    for h in hits:
        by_entry.setdefault(h.subject_id, []).append(h)
    out = []
    for group in by_entry.values():
        group.sort(key=lambda h: -h.score)
        first = group[0]
        if len(group) == 1:
            out.append(first)
            continue
        details = {}
        for h in group:
            details.update(h.details)
        details["tail"] = min(h.details.get("tail", 1.0) for h in group)
        out.append(Hit(NAME, first.subject, first.subject_id, first.facility_code, first.entry_ids,
                       min(0.99, first.score + 0.05 * (len(group) - 1)),
                       " ".join(h.reason for h in group), details))
    return out
