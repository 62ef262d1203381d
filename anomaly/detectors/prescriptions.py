"""Dispensing beyond what was prescribed, or beyond the protocol ceiling for one dispensing.

A prescription's fills add up in time order; the fill that takes the total past the prescribed
quantity (times a tolerance for rounding to whole packs) is flagged, with the running total.
Partial fills and refills (each refill is a prescription of its own) stay under it.
"""

from __future__ import annotations

import pandas as pd

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from stock.messages import Reasons, code, day, join, msg, num
from stock.messages import qty as quantity

NAME = "prescriptions"


def _when(row):
    local = row.occurred_at.tz_convert("UTC") if row.occurred_at.tzinfo else row.occurred_at
    if not pd.isna(row.local_date):
        return msg("on %(date)s at %(hour)sh", date=day(row.local_date), hour=code(f"{row.local_hour:02d}"))
    return msg("at %(time)s", time=code(local))


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
                            msg("%(qty)s of %(item)s dispensed to %(card)s against prescription %(rx)s, which "
                                "was written for %(rx_card)s and %(rx_item)s; recorded by %(user)s at "
                                "%(facility)s %(when)s.", qty=quantity(row.quantity, row.unit),
                                item=code(row.item_name), card=code(row.health_card_id),
                                rx=code(row.prescription_id), rx_card=code(row.health_card_id_rx),
                                rx_item=code(row.item_code_rx), user=code(row.recorded_by),
                                facility=code(row.facility_code), when=_when(row)),
                            {"prescription_patient": row.health_card_id_rx, "prescription_item": row.item_code_rx}))
        m = m[~mismatch].copy()
        m["filled"] = m.groupby("prescription_id")["quantity"].cumsum()
        m["ratio"] = m["filled"] / m["quantity_rx"]
        over = m[m["ratio"] > s.over_prescription_ratio]
        for row in over.itertuples():
            score = squash(row.ratio - 1.0, half=1.0, floor=0.6, ceiling=0.99)
            earlier = (join([]) if row.filled == row.quantity
                       else msg(", bringing the total filled to %(total)s", total=num(row.filled)))
            hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,), score,
                            msg("Dispensed %(qty)s of %(item)s against prescription %(rx)s for "
                                "%(prescribed)s%(earlier)s (%(ratio)sx), by user %(user)s at %(facility)s "
                                "%(when)s.", qty=quantity(row.quantity, row.unit), item=code(row.item_name),
                                rx=code(row.prescription_id), prescribed=num(row.quantity_rx), earlier=earlier,
                                ratio=num(row.ratio, 1), user=code(row.recorded_by),
                                facility=code(row.facility_code), when=_when(row)),
                            {"dispensed": row.quantity, "filled_total": row.filled,
                             "prescribed": row.quantity_rx, "ratio": round(row.ratio, 3)}))
    ceiling = d[d["max_dispense_quantity"].notna() & (d["quantity"] > d["max_dispense_quantity"])]
    for row in ceiling.itertuples():
        ratio = row.quantity / row.max_dispense_quantity
        hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,),
                        squash(ratio - 1.0, half=1.0, floor=0.5, ceiling=0.95),
                        msg("Dispensed %(qty)s of %(item)s in one dispensing, over the protocol ceiling of "
                            "%(ceiling)s (%(ratio)sx), by user %(user)s at %(facility)s %(when)s.",
                            qty=quantity(row.quantity, row.unit), item=code(row.item_name),
                            ceiling=num(row.max_dispense_quantity), ratio=num(ratio, 1),
                            user=code(row.recorded_by), facility=code(row.facility_code), when=_when(row)),
                        {"dispensed": row.quantity, "ceiling": row.max_dispense_quantity, "ratio": round(ratio, 3)}))
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
        out.append(Hit(NAME, first.subject, first.subject_id, first.facility_code, first.entry_ids,
                       min(0.99, first.score + 0.05 * (len(group) - 1)),
                       Reasons(h.reason for h in group), details))
    return out
