"""Cases, not rows: detector findings gathered per subject and scored by how surprising they are here.

A detector's own score says how far past its threshold a finding is; it does not say how often
that happens in this ledger. A rule that fires on one transfer in ten, at 0.95 each, buries a rule
that fires twice in a year. So every finding is given a *surprise*, -log10 of an empirical tail
probability measured in the ledger being scanned:

- the share of the subjects the detector examined (dispensings, patients, users, routes...) that
  it found something about: a detector that fires on a tenth of what it looks at cannot be more
  surprising than 1 in 10; among its findings the strongest (by rank, ties sharing the mean rank)
  gain up to BONUS_CAP more;
- a finding with its own probability (``details["p"]``, from a population test, with
  ``details["tests"]`` subjects tested) uses that, corrected for the number of tests, when it is
  the smaller;
- a finding about a facility's item is divided by the number of facilities where the same
  detector found the same item in the same month: a recall or a national write-off wave seen at
  many sites is not a local loss.

Findings are then gathered into one case per subject: a user, a patient, a facility's item (its
counts, write-offs and months) or a route (its shipments). A finding about one dispensing stays
one flag (one event, one flag), unless the user who recorded it has a case of their own (their
dispensing stands out against colleagues): then it is evidence in that case. A case keeps, per
detector, its strongest findings first and at most EVIDENCE_CAP entries, and its surprise adds the
findings' surprises with halving weights (several independent oddities by one person say more
than one, but not without bound). Across detectors on the same case flags.merge combines them the
same way. The flag's score is 1 - exp(-surprise / SCALE): monotone, so the ranking is by surprise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from importlib import import_module

import numpy as np
import pandas as pd

from anomaly import detectors
from anomaly.features import Frames
from anomaly.hits import Hit
from stock.messages import Reasons, count, nmsg

EVIDENCE_CAP = 10
"""Entries a case cites per detector: the strongest findings' own entries, in order."""
DECAY = 0.5
"""Weight of each further detector on a case relative to the one before."""
SAME_DECAY = 0.25
"""Weight of each further finding of one detector on a case: a pattern repeated on one subject
adds less than a second, independent kind of evidence."""
MAX_TERMS = 6
SCALE = 3.0
"""Surprise at which a score reaches 1 - 1/e (a one-in-a-thousand finding is 0.63)."""
PEER_SUBJECTS = ("facility_item",)
TIE_BREAK = 1e-3
"""Surprise added per unit of log evidence (findings, stock moved): enough to order equal findings."""
BONUS_POWER, BONUS_CAP = 0.5, 1.0
"""A finding's rank among its detector's counts with this power, and adds at most this much surprise."""


def combine(surprises, decay: float = DECAY) -> float:
    """Surprises of one subject's findings added with decaying weights, strongest first."""
    ordered = sorted((float(x) for x in surprises), reverse=True)[:MAX_TERMS]
    return sum(x * decay ** i for i, x in enumerate(ordered))


def to_score(surprise: float) -> float:
    return 1.0 - math.exp(-max(surprise, 0.0) / SCALE)


def _case_of(h: Hit, first: dict) -> tuple[str, str, str | None]:
    """(subject, subject_id, facility) of the case a finding belongs to."""
    if h.subject == "entry" and h.entry_ids and h.entry_ids[0] in first:
        row = first[h.entry_ids[0]]
        if row["kind"] == "dispense":
            return h.subject, h.subject_id, h.facility_code  # one event, one flag
        return "facility_item", f"{row['facility_code']}:{row['item_code']}", row["facility_code"]
    if h.subject == "facility_item":
        parts = h.subject_id.split(":")
        return "facility_item", ":".join(parts[:2]), h.facility_code
    if h.subject == "user" and h.facility_code and ":" not in h.subject_id:
        return "user", f"{h.facility_code}:{h.subject_id}", h.facility_code
    if h.subject == "facility":
        return "facility", h.subject_id.split(":")[0], h.facility_code
    return h.subject, h.subject_id, h.facility_code


def _unit(h: Hit, first: dict) -> tuple:
    """What a finding is counted against when measuring how common the detector's findings are:
    the user who recorded a dispensing (so a finding most staff produce is no surprise), else the
    case's subject."""
    if h.subject == "entry" and h.entry_ids and h.entry_ids[0] in first:
        row = first[h.entry_ids[0]]
        if row["kind"] == "dispense":
            return "user", row["facility_code"], row["recorded_by"]
    return _case_of(h, first)[:2]


def _units(frames: Frames, unit_kind: str, detector: str, hits: list[Hit]) -> int:
    """How many units of this kind the detector could have found something about."""
    own = getattr(import_module(f"anomaly.detectors.{detector}"), "population", None) \
        if detector in detectors.ALL else None
    if own is not None and unit_kind != "user":
        return int(own(frames))
    d = frames.dispenses
    if unit_kind == "user":
        return int(len(d[["facility_code", "recorded_by"]].drop_duplicates()))
    if unit_kind == "patient":
        return int(d["health_card_id"].nunique())
    if unit_kind == "transfer":
        outs = frames.of_kind("transfer_out")
        return int(len(outs[["facility_code", "counterparty", "item_code"]].drop_duplicates()))
    if unit_kind == "facility_item":
        return int(len(frames.live[["facility_code", "item_code"]].drop_duplicates()))
    if unit_kind == "facility":
        return int(frames.live["facility_code"].nunique())
    return int(len(frames.live))


def surprises(hits: list[Hit], frames: Frames, first: dict | None = None) -> list[float]:
    """Each finding's surprise (see the module's docstring), in the order given."""
    first = _first(frames, hits) if first is None else first
    out = np.zeros(len(hits))
    by_detector: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hits):
        by_detector[h.detector].append(i)
    for detector, idx in by_detector.items():
        group = [hits[i] for i in idx]
        units = [_unit(h, first) for h in group]
        found = len(set(units))
        population = max(_units(frames, units[0][0], detector, group), found, 1)
        strength = pd.Series([h.score for h in group])
        rank = strength.rank(ascending=False, method="average").to_numpy()
        # How common the detector's findings are here, plus a bounded bonus for being among its
        # strongest: a detector that scores on a continuous scale does not outrank a rare rule by
        # the spread of its own scores alone.
        rate = found / population
        p = np.maximum(rate * (rank / len(group)) ** BONUS_POWER, rate / 10 ** BONUS_CAP)
        own = np.array([h.details.get("p", np.nan) if isinstance(h.details, dict) else np.nan for h in group],
                       dtype="float64")
        tests = np.array([h.details.get("tests", 1) if isinstance(h.details, dict) else 1 for h in group],
                         dtype="float64")
        p = np.where(np.isfinite(own), np.minimum(p, own * np.maximum(tests, 1)), p)
        # The same finding at many facilities in the same month is a wave, not a local event.
        where = [(_case_of(h, first)[0], _item_month(h, first)) for h in group]
        sites: dict[tuple, set] = defaultdict(set)
        for h, (subject, key) in zip(group, where):
            if subject in PEER_SUBJECTS and key is not None:
                sites[key].add(h.facility_code)
        wave = np.array([len(sites.get(key, ())) or 1 if subject in PEER_SUBJECTS and key is not None else 1
                         for subject, key in where], dtype="float64")
        out[idx] = -np.log10(np.clip(p * wave, 1e-12, 1.0))
    return out.tolist()


def _first(frames: Frames, hits: list[Hit]) -> dict[str, dict]:
    """The columns cases need of each entry the findings cite, by entry id."""
    cited = {e for h in hits for e in h.entry_ids}
    e = frames.entries
    e = e[e["entry_id"].isin(cited)].drop_duplicates("entry_id")
    cols = ["kind", "facility_code", "item_code", "month", "recorded_by", "keyed_quantity"]
    return {eid: dict(zip(cols, values)) for eid, values in zip(e["entry_id"], zip(*(e[c] for c in cols)))}


def _item_month(h: Hit, first: dict):
    if not h.entry_ids or h.entry_ids[0] not in first:
        return None
    row = first[h.entry_ids[0]]
    return row["item_code"], row["month"]


def assemble(hits: list[Hit], frames: Frames) -> list[Hit]:
    """One finding per case and detector, its surprise in ``details``."""
    if not hits:
        return []
    first = _first(frames, hits)
    s = surprises(hits, frames, first)
    users = {_case_of(h, first)[1] for h in hits if h.subject == "user"}
    groups: dict[tuple, list[tuple[float, Hit]]] = defaultdict(list)
    for h, x in zip(hits, s):
        subject, subject_id, facility = _case_of(h, first)
        unit = _unit(h, first)
        if subject == "entry" and unit[0] == "user" and f"{unit[1]}:{unit[2]}" in users:
            # A user who stands out against colleagues: their single odd dispensings are the
            # case's evidence, not flags of their own.
            subject, subject_id, facility = "user", f"{unit[1]}:{unit[2]}", unit[1]
        groups[(subject, subject_id, facility, h.detector)].append((x, h))
    out = []
    for (subject, subject_id, facility, detector), found in groups.items():
        found.sort(key=lambda t: (-t[0], -t[1].score, t[1].entry_ids))
        best_s, best = found[0]
        cited: list[str] = []
        for _x, h in found:
            for eid in h.entry_ids:
                if eid not in cited and len(cited) < EVIDENCE_CAP:
                    cited.append(eid)
        # Ties are broken by the evidence, never by an id: more findings, then more stock involved.
        moved = sum(abs(float(first[e]["keyed_quantity"])) for e in cited if e in first)
        total = (combine((x for x, _h in found), decay=SAME_DECAY)
                 + TIE_BREAK * (math.log1p(len(found)) + math.log1p(moved) / 10))
        reason = best.reason
        if len(found) > 1:
            reason = Reasons([reason, nmsg("%(n)s further finding of this kind about the same subject.",
                                           "%(n)s further findings of this kind about the same subject.",
                                           n=count(len(found) - 1))])
        details = dict(best.details) if isinstance(best.details, dict) else {}
        details.update(surprise=round(total, 4), findings=len(found), strength=round(best.score, 4))
        out.append(Hit(detector, subject, subject_id, facility, tuple(cited), to_score(total), reason, details,
                       case=f"{subject}:{subject_id}"))
    return out
