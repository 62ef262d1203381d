"""Dispensing to health cards that are in no patient register, or to patients after their death.

Both are classic ghost-patient diversion: the stock leaves the shelf in a name that cannot have
received it. Each card becomes one flag whose evidence is every such dispensing.
"""

from __future__ import annotations

from anomaly.features import Frames
from anomaly.hits import Hit, amount, plural, squash

NAME = "patients"


def _summary(group) -> str:
    parts = []
    for (item, unit), g in group.groupby(["item_name", "unit"], sort=True):
        parts.append(f"{amount(g['quantity'].sum(), unit)} of {item}")
    return "; ".join(parts)


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
                        f"Health card {card} is in no patient register, yet {plural(len(g), 'dispensing')} "
                        f"({_summary(g)}) {'was' if len(g) == 1 else 'were'} recorded to it at "
                        f"{', '.join(facilities)} by {users}, from {g['local_date'].min():%Y-%m-%d}.",
                        {"dispensings": len(g), "users": users, "facilities": facilities}, case="unregistered"))
    dead = d[d["deceased_on"].notna() & (d["local_date"] > d["deceased_on"])]
    for card, g in dead.groupby("health_card_id", sort=True):
        g = g.sort_values("occurred_at")
        died = g["deceased_on"].iloc[0]
        facilities = sorted(set(g["facility_code"]))
        hits.append(Hit(NAME, "patient", card, facilities[0], tuple(g["entry_id"]),
                        squash(len(g), half=1, floor=0.8, ceiling=0.99),
                        f"{plural(len(g), 'dispensing')} ({_summary(g)}) to {card} after the "
                        f"patient's death on {died:%Y-%m-%d}, the last on {g['local_date'].max():%Y-%m-%d}, at "
                        f"{', '.join(facilities)} by {', '.join(sorted(set(g['recorded_by'])))}.",
                        {"dispensings": len(g), "deceased_on": f"{died:%Y-%m-%d}", "facilities": facilities},
                        case="after_death"))
    return hits
