"""Per-seed parameters of the legitimate behaviours, and the noise profiles.

Every seed is a differently-shaped country: each parameter is drawn once per data set, uniformly
from its range below. ``standard`` uses the ranges as they are; ``shifted`` doubles every rate and
magnitude (the noise a detector tuned on ``standard`` has never seen), keeping shares that are
fractions of a whole below one. ``plain`` has none of these behaviours: it is the generator as it
was before them, which is what the committed ``sample_data/small`` set was written with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

PROFILES = ("plain", "standard", "shifted")

RANGES: dict[str, tuple[float, float, bool]] = {
    # name: (low, high, doubled in the shifted profile)
    # --- at the counter
    "whole_pack_rate": (0.02, 0.06, True),        # prescribed fills rounded up to whole strips/bottles
    "partial_chronic": (0.02, 0.06, True),        # fills given in two parts days apart
    "partial_acute": (0.01, 0.03, True),
    "keyed_ten_rate": (0.001, 0.003, True),      # dispensings keyed ten times too large
    "keyed_ten_days": (1.0, 3.0, True),           # longest delay of a correction, in days
    "early_refill_rate": (0.03, 0.08, True),      # chronic refills collected early
    "early_refill_days": (5.0, 9.0, True),        # how early, at most
    "postop_rate": (0.004, 0.012, True),          # chronic treatments with an operation elsewhere
    "move_rate": (0.01, 0.03, True),              # chronic patients who move to another facility
    "outbreaks_per_region": (0.3, 0.7, True),
    "outbreak_excess": (0.8, 1.6, True),          # extra demand in the region during an outbreak
    "new_clinic_share": (0.03, 0.08, True),       # health centres that open during the period
    "emergency_per_hospital_month": (0.5, 2.0, True),  # controlled doses without prescription
    "breakage_rate": (0.0005, 0.002, True),       # breakage per dispensing, on top of the usual
    # --- staff
    "workload_spread": (0.3, 0.8, True),          # sigma of each user's share of the work (lognormal)
    "staff_change_share": (0.05, 0.15, True),     # facilities where someone leaves and is replaced
    "night_share": (0.18, 0.32, False),           # hospital dispensings on the night shift
    "saturday_closed_share": (0.5, 1.0, False),   # health centres closed on Saturday as well as Friday
    # --- on the shelves
    "cheap_shortfall_rate": (0.03, 0.08, True),   # counts of cheap items a few percent short
    "cheap_shortfall_size": (0.05, 0.05, True),   # centre of the 3-7% band (width +-0.02, doubled too)
    "fridges_per_scale": (0.5, 1.5, True),        # fridge failures (at least one)
    "recalls": (1.0, 1.0, True),                  # lots recalled nationwide
    "recall_compliance": (0.75, 0.95, False),     # share of holders that write the recalled lot off
    "short_ship_rate": (0.003, 0.01, True),       # waybill lines picked short and corrected later
    "short_ship_size": (0.05, 0.15, True),        # share of the line missing
    "split_delivery_rate": (0.01, 0.04, True),    # lines arriving in two trips
    "damaged_arrival_rate": (0.005, 0.02, True),  # lines with breakage found on unpacking
    "late_shipment_share": (0.1, 0.3, True),      # facilities with a delivery still on the road at the end
    "monthend_expiry_share": (0.2, 0.5, True),    # facilities that clear short-dated lots at month end
    "monthend_expiry_days": (30.0, 60.0, True),   # ... every lot with less than this left to expiry
    "lateral_rate": (0.01, 0.04, True),           # facility-months passing surplus to a neighbour
    # --- optional columns
    "no_document_share": (0.05, 0.3, True),       # facilities that write no document numbers
    "no_recorded_at_share": (0.1, 0.4, True),     # facilities whose rows carry no recorded_at
    "batch_keying_share": (0.1, 0.3, True),       # facilities keying paper records after the fact
}


@dataclass(frozen=True)
class Behaviours:
    profile: str
    whole_pack_rate: float
    partial_chronic: float
    partial_acute: float
    keyed_ten_rate: float
    keyed_ten_days: float
    early_refill_rate: float
    early_refill_days: float
    postop_rate: float
    move_rate: float
    outbreaks_per_region: float
    outbreak_excess: float
    new_clinic_share: float
    emergency_per_hospital_month: float
    breakage_rate: float
    workload_spread: float
    staff_change_share: float
    night_share: float
    saturday_closed_share: float
    cheap_shortfall_rate: float
    cheap_shortfall_size: float
    fridges_per_scale: float
    recalls: float
    recall_compliance: float
    short_ship_rate: float
    short_ship_size: float
    split_delivery_rate: float
    damaged_arrival_rate: float
    late_shipment_share: float
    monthend_expiry_share: float
    monthend_expiry_days: float
    lateral_rate: float
    no_document_share: float
    no_recorded_at_share: float
    batch_keying_share: float

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "profile"}


def draw(rng: np.random.Generator, profile: str) -> Behaviours | None:
    """This seed's parameters under ``profile`` (None for ``plain``).

    The draws do not depend on the profile, so ``shifted`` is exactly ``standard`` with its rates
    and magnitudes doubled: the same country, noisier.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if profile == "plain":
        return None
    values = {}
    for name, (lo, hi, doubled) in RANGES.items():
        v = float(rng.uniform(lo, hi))
        if profile == "shifted" and doubled:
            v *= 2
        values[name] = min(v, 1.0) if name.endswith("share") else v
    return Behaviours(profile=profile, **values)
