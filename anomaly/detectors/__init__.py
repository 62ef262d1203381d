"""The detectors. Each module holds one small, independent detector: ``detect(frames) -> list[Hit]``.

Adding a detector means adding a module here and naming it in ALL; the scan runs them in this
order, and flag merging does not depend on it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from anomaly.features import Frames
from anomaly.hits import Hit

ALL = (
    "prescriptions",      # over the prescription or the protocol ceiling
    "no_prescription",    # controlled item without a prescription
    "patients",           # unregistered or deceased patient
    "duplicates",         # same patient and item at several facilities within the days-supply
    "serials",            # one pack (GS1 serial) dispensed more than once
    "counts",             # physical count short of the book
    "writeoffs",          # losses written off far from expiry
    "transfers",          # transfers that never arrive, or arrive short
    "consumption",        # facility-item consumption against own history and peers
    "sustained",          # facility-item dispensing per patient raised for months against its own history
    "users",              # a user's dispensing against colleagues
    "overfill",           # a user filling beyond colleagues for the same item and prescribed quantity
    "circles",            # a user giving controlled items without prescription to a few repeat patients
    "afterhours",         # a user's controlled dispensing in hours the facility rarely works
    "corrected",          # a user whose dispensings are corrected far more than colleagues'
    "requisitions",       # requests far above use, emergency sprees, deliveries consumption never follows
    "isolation",          # learned: IsolationForest on per-dispense features
)


def load(name: str) -> Callable[[Frames], list[Hit]]:
    return import_module(f"anomaly.detectors.{name}").detect


def available() -> list[str]:
    """Detectors whose module exists (the list grows as detectors are written)."""
    out = []
    for name in ALL:
        try:
            import_module(f"anomaly.detectors.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"anomaly.detectors.{name}":
                raise
            continue
        out.append(name)
    return out
