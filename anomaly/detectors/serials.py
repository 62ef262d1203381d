"""One pack dispensed more than once: the same GS1 serial number of the same item.

A pack's serial (AI 21 of its DataMatrix) is unique within its GTIN, and an item here carries one
GTIN, so a serial seen on two dispensings of an item is one physical pack given out twice. That
happens when a pack is recorded as dispensed, kept, and "dispensed" again to another card (the
stock leaves the books twice, the pack only once), or when a scanned label is copied onto a
diverted pack. A dispensing that was reversed does not count: the pack came back and may be given
out again. Each pack is one flag, whose evidence is every live dispensing of it.
"""

from __future__ import annotations

from anomaly.features import Frames
from anomaly.hits import Hit, squash

NAME = "serials"


def _times(n: int) -> str:
    return "twice" if n == 2 else f"{n} times"


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    d = d[d["serial_number"] != ""]
    if d.empty:
        return []
    least = max(2, frames.settings.serial_reuse_min_dispensings)
    counts = d.groupby(["item_code", "serial_number"])["entry_id"].transform("size")
    d = d[counts >= least]
    hits: list[Hit] = []
    for (item, serial), g in d.groupby(["item_code", "serial_number"], sort=True):
        g = g.sort_values(["occurred_at", "seq"])
        first = g.iloc[0]
        n = len(g)
        where = " and ".join(f"at {r.facility_code} on {r.local_date:%Y-%m-%d} by {r.recorded_by}"
                             + (f" to {r.health_card_id}" if r.health_card_id else "")
                             for r in g.itertuples())
        facilities = list(dict.fromkeys(g["facility_code"]))
        cards = sorted(set(g["health_card_id"]) - {""})
        gtin = f" (GTIN {first['gtin']})" if first["gtin"] else ""
        # Beyond the first dispensing every one is a pack that cannot exist; another facility or
        # another patient makes an honest double scan at the counter even less likely.
        excess = (n - 1) + 0.5 * (len(facilities) - 1) + 0.5 * (len(cards) - 1 if cards else 0)
        hits.append(Hit(
            NAME, "entry", first["entry_id"], first["facility_code"], tuple(g["entry_id"]),
            squash(excess, half=1, floor=0.7, ceiling=0.98),
            f"Pack serial {serial} of {first['item_name']}{gtin} dispensed {_times(n)}: {where}.",
            {"serial_number": serial, "item_code": item, "gtin": first["gtin"] or None, "dispensings": n,
             "facilities": facilities, "health_cards": cards},
            case=f"serial:{item}:{serial}",
        ))
    return hits
