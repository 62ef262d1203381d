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
from stock.messages import code, count, day, join, msg, nmsg

NAME = "serials"


def _times(n: int):
    return msg("twice") if n == 2 else nmsg("%(n)s time", "%(n)s times", n=count(n))


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
        where = join([msg("at %(facility)s on %(date)s by %(user)s to %(card)s", facility=code(r.facility_code),
                              date=day(r.local_date), user=code(r.recorded_by), card=code(r.health_card_id))
                          if r.health_card_id else
                          msg("at %(facility)s on %(date)s by %(user)s", facility=code(r.facility_code),
                              date=day(r.local_date), user=code(r.recorded_by))
                          for r in g.itertuples()], "and")
        facilities = list(dict.fromkeys(g["facility_code"]))
        cards = sorted(set(g["health_card_id"]) - {""})
        gtin = msg(" (GTIN %(gtin)s)", gtin=code(first["gtin"])) if first["gtin"] else join([])
        # Beyond the first dispensing every one is a pack that cannot exist; another facility or
        # another patient makes an honest double scan at the counter even less likely.
        excess = (n - 1) + 0.5 * (len(facilities) - 1) + 0.5 * (len(cards) - 1 if cards else 0)
        hits.append(Hit(
            NAME, "entry", first["entry_id"], first["facility_code"], tuple(g["entry_id"]),
            squash(excess, half=1, floor=0.7, ceiling=0.98),
            msg("Pack serial %(serial)s of %(item)s%(gtin)s dispensed %(times)s: %(where)s.", serial=code(serial),
                item=code(first['item_name']), gtin=gtin, times=_times(n), where=where),
            {"serial_number": serial, "item_code": item, "gtin": first["gtin"] or None, "dispensings": n,
             "facilities": facilities, "health_cards": cards},
            case=f"serial:{item}:{serial}",
        ))
    return hits
