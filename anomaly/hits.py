"""What a detector returns: a finding with its evidence, a calibrated score and a reason."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """One detector's finding.

    ``score`` is the detector's own strength, 0..1: how far past its threshold the finding is (a
    population detector gives 1 - its chance, and that chance in ``details["p"]``). What it means
    in the ledger being scanned is decided by anomaly.cases, which turns it into a surprise among
    the detector's findings and peers. ``reason`` is one sentence with the numbers that matter;
    ``details`` keeps those numbers for the flag page.
    """

    detector: str
    subject: str
    subject_id: str
    facility_code: str | None
    entry_ids: tuple[str, ...]
    score: float
    reason: str
    details: dict = field(default_factory=dict, compare=False, hash=False)
    case: str | None = None
    """For findings about a patient, user or facility-item whose evidence grows as the ledger does
    (a ghost card used again, a month's spike gaining dispensings): a name for the finding that
    stays the same, so the flag keeps its id and gathers the new evidence instead of splitting
    into a second flag. Findings about single entries leave it empty: their evidence is their
    identity."""

    @property
    def key(self) -> str:
        """Stable flag id: the same subject and case (or, without a case, the same evidence)
        always give the same id."""
        what = f"case:{self.case}" if self.case else ";".join(sorted(set(self.entry_ids)))
        raw = f"{self.subject}|{self.subject_id}|{what}"
        return "F" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def squash(excess: float, *, half: float, floor: float = 0.0, ceiling: float = 1.0) -> float:
    """Map an excess (0 = at the threshold) onto floor..ceiling, reaching the midpoint at ``half``.

    Detectors express how far past their threshold a finding is; this turns that into a score
    with diminishing returns, so a 10x over-fill is more certain than a 1.5x one but both stay
    comparable with other detectors' scores.
    """
    if excess <= 0 or math.isnan(excess):
        return floor
    return floor + (ceiling - floor) * (1 - math.exp(-math.log(2) * excess / half))


def qty(value: float) -> str:
    """A quantity as a person writes it: 90, not 90.0; 7.5 stays 7.5."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}".rstrip("0").rstrip(".")


_UNCOUNTABLE = {"ml", "l", "g", "kg", "mg", "mcg", "iu"}


def amount(value: float, unit: str) -> str:
    """'100 tablets', '1 vial', '7.5 ml': a quantity with its unit as a person says it."""
    text = qty(value)
    if unit.lower() in _UNCOUNTABLE or value == 1 or unit.endswith("s"):
        return f"{text} {unit}"
    return f"{text} {unit}es" if unit.endswith(("ch", "sh", "x")) else f"{text} {unit}s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
