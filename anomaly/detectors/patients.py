"""Dispensing to health cards that are in no patient register, or to patients after their death.

Both are classic ghost-patient diversion: the stock leaves the shelf in a name that cannot have
received it. Each card becomes one flag whose evidence is every such dispensing.
"""

from __future__ import annotations

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from stock.messages import code, count, day, join, msg, nmsg
from stock.messages import qty as quantity

NAME = "patients"


def _summary(group):
    parts = []
    for (item, unit), g in group.groupby(["item_name", "unit"], sort=True):
        parts.append(msg("%(qty)s of %(item)s", qty=quantity(g['quantity'].sum(), unit), item=code(item)))
    return join(parts, ";")


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    hits: list[Hit] = []
    ghosts = d[~d["patient_registered"]]
    for card, g in ghosts.groupby("health_card_id", sort=True):
        g = g.sort_values("occurred_at")
        users = ", ".join(sorted(set(g["recorded_by"])))
        facilities = sorted(set(g["facility_code"]))
        score = squash(len(g) + 2 * g["controlled"].sum(), half=2, floor=0.6, ceiling=0.95)
        hits.append(Hit(NAME, "patient", card, facilities[0], tuple(g["entry_id"]), score,
                        nmsg("Health card %(card)s is in no patient register, yet %(n)s dispensing "
                             "(%(summary)s) was recorded to it at %(facilities)s by %(users)s, from %(date)s.",
                             "Health card %(card)s is in no patient register, yet %(n)s dispensings "
                             "(%(summary)s) were recorded to it at %(facilities)s by %(users)s, from %(date)s.",
                             n=count(len(g)), card=code(card), summary=_summary(g),
                             facilities=join(facilities, ","), users=join(sorted(set(g["recorded_by"])), ","),
                             date=day(g['local_date'].min())),
                        {"dispensings": len(g), "users": users, "facilities": facilities}, case="unregistered"))
    dead = d[d["deceased_on"].notna() & (d["local_date"] > d["deceased_on"])]
    for card, g in dead.groupby("health_card_id", sort=True):
        g = g.sort_values("occurred_at")
        died = g["deceased_on"].iloc[0]
        facilities = sorted(set(g["facility_code"]))
        hits.append(Hit(NAME, "patient", card, facilities[0], tuple(g["entry_id"]),
                        squash(len(g), half=1, floor=0.8, ceiling=0.99),
                        nmsg("%(n)s dispensing (%(summary)s) to %(card)s after the patient's death on "
                             "%(died)s, the last on %(last)s, at %(facilities)s by %(users)s.",
                             "%(n)s dispensings (%(summary)s) to %(card)s after the patient's death on "
                             "%(died)s, the last on %(last)s, at %(facilities)s by %(users)s.",
                             n=count(len(g)), summary=_summary(g), card=code(card), died=day(died),
                             last=day(g['local_date'].max()), facilities=join(facilities, ","),
                             users=join(sorted(set(g['recorded_by'])), ",")),
                        {"dispensings": len(g), "deceased_on": f"{died:%Y-%m-%d}", "facilities": facilities},
                        case="after_death"))
    return hits
