"""`dawa evaluate`: how well the detectors find injected leakage, against naive baselines.

Detection quality is measured, not asserted. A generated data set comes with truth.csv naming
the ledger entries that are the evidence of each injected incident; this module imports the set
into a scratch database, runs the same scan users run, and scores the flags in the order an
auditor reviews them (anomaly.export.query).

Auditors have a limited review budget, so the headline figures are taken at a budget of twice
the number of incidents: how many incidents an auditor who reviews that many flags would find,
and how many of those flags were worth the look. Average precision over the whole ranking says
whether incidents come early or late. Two naive baselines are scored in the same run on the same
ledger (anomaly.baselines), so a change to a detector or a threshold shows its effect on real
numbers and on the gap to what a plain outlier test would do.
"""

from __future__ import annotations

import csv
import math
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import select

import migrations
from anomaly import baselines, features, scan
from anomaly.export import query
from stock.db import make_engine, session_factory
from stock.errors import DawaError
from stock.importer import import_dataset
from stock.models import LedgerEntry

BUDGET_PER_INCIDENT = 2
FALSE_ALARMS_SHOWN = 5
DAWA = "Dawa"

Progress = Callable[[str, int, int], None]


class NoGroundTruth(DawaError):
    """The data set has no usable truth.csv, so there is nothing to measure against."""

    field = "truth.csv"


@dataclass(frozen=True)
class Truth:
    """Which incident each evidence entry belongs to, and each incident's scenario."""

    scenario_of: dict[str, str]
    incidents_of: dict[str, frozenset[str]]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str]]) -> Truth:
        """From (incident_id, scenario, entry_id) triples, one per evidence entry."""
        scenario_of: dict[str, str] = {}
        incidents_of: dict[str, set[str]] = {}
        for incident, scenario, entry in rows:
            scenario_of[incident] = scenario
            incidents_of.setdefault(entry, set()).add(incident)
        return cls(scenario_of, {e: frozenset(i) for e, i in incidents_of.items()})

    @classmethod
    def from_csv(cls, path: Path) -> Truth:
        if not path.exists():
            raise NoGroundTruth(f"{path} not found: evaluation needs a data set with its ground truth")
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            # One row per evidence entry (entry_id), or one per incident with its entries (entry_ids).
            ids = "entry_id" if "entry_id" in columns else "entry_ids" if "entry_ids" in columns else "entry_id"
            missing = {"incident_id", "scenario", ids} - columns
            if missing:
                raise NoGroundTruth(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
            truth = cls.from_rows((r["incident_id"], r["scenario"], e.strip()) for r in reader
                                  for e in r[ids].split(";") if e.strip())
        if not truth.scenario_of:
            raise NoGroundTruth(f"{path} names no incident")
        return truth

    @property
    def incidents_per_scenario(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for scenario in self.scenario_of.values():
            out[scenario] = out.get(scenario, 0) + 1
        return dict(sorted(out.items()))

    def revealed(self, evidence: Iterable[str]) -> set[str]:
        """The incidents a flag with this evidence points an auditor to."""
        found: set[str] = set()
        for entry in evidence:
            found |= self.incidents_of.get(entry, frozenset())
        return found


@dataclass(frozen=True)
class Measures:
    """One ranked list of flags scored against the truth."""

    flags: int
    budget: int
    recall_at_budget: float
    """Share of incidents with at least one evidence entry among the top ``budget`` flags."""
    precision_at_budget: float
    """Share of the top ``budget`` flags (or of all flags, if fewer) that touch an incident."""
    average_precision: float
    """Mean over incidents of the precision at the rank where each is first found (0 if never)."""
    recall_all: float
    """Share of incidents found anywhere in the ranking."""
    scenario_recall: dict[str, float]
    """Recall at budget per scenario."""
    first_found: dict[str, int] = field(default_factory=dict)
    """Incident -> 1-based rank of the first flag that reveals it (absent: never found)."""
    incidents: tuple[str, ...] = ()

    def missed(self) -> list[str]:
        """Incidents not found within the budget, for a person looking into a low figure."""
        return [i for i in self.incidents if self.first_found.get(i, self.budget + 1) > self.budget]


def measure(ranking: Sequence[Iterable[str]], truth: Truth, budget: int) -> Measures:
    """Score a ranking (each flag's evidence entry ids, most suspicious first).

    Walking down the ranking, a flag is a hit when it reveals an incident not yet found; the
    precision at that rank is hits so far over flags so far. One flag revealing two new incidents
    is one hit (an auditor reviewed one flag) and both incidents take its precision.
    """
    incidents = tuple(sorted(truth.scenario_of))
    first_found: dict[str, int] = {}
    precision_when_found: dict[str, float] = {}
    hits = 0
    touching_in_budget = 0
    for rank, evidence in enumerate(ranking, start=1):
        revealed = truth.revealed(evidence)
        if rank <= budget and revealed:
            touching_in_budget += 1
        new = revealed - first_found.keys()
        if not new:
            continue
        hits += 1
        for incident in new:
            first_found[incident] = rank
            precision_when_found[incident] = hits / rank
    n = len(incidents)
    reviewed = min(budget, len(ranking))
    in_budget = {i for i, r in first_found.items() if r <= budget}
    per_scenario: dict[str, list[int]] = {}
    for incident in incidents:
        counts = per_scenario.setdefault(truth.scenario_of[incident], [0, 0])
        counts[0] += incident in in_budget
        counts[1] += 1
    return Measures(
        flags=len(ranking),
        budget=budget,
        recall_at_budget=len(in_budget) / n if n else 0.0,
        precision_at_budget=touching_in_budget / reviewed if reviewed else 0.0,
        average_precision=sum(precision_when_found.values()) / n if n else 0.0,
        recall_all=len(first_found) / n if n else 0.0,
        scenario_recall={s: found / total for s, (found, total) in sorted(per_scenario.items())},
        first_found=first_found,
        incidents=incidents,
    )


@dataclass(frozen=True)
class Evaluation:
    dataset: Path
    entries: int
    incidents: dict[str, int]
    """Incidents per scenario, as truth.csv names them."""
    budget: int
    detectors: tuple[str, ...]
    dawa: Measures
    baselines: dict[str, Measures]
    seconds: dict[str, float]
    review: tuple[Measures, ...] = ()
    """The queue after each simulated review round (see review_rounds)."""
    found_by: dict[str, str] = field(default_factory=dict)
    """Incident -> the rank, detectors and subject of the first flag that reveals it."""
    false_alarms: tuple[str, ...] = ()
    """The highest-ranked flags that reveal no incident: what buries the incidents."""
    requisitions: tuple[float, float, int, int] | None = None
    """With requisition scenarios injected: the requisition detector's (recall, average precision,
    findings, incidents) against them."""
    requisition_scenarios: tuple[int, str] | None = None
    """(seed, noise) of the injected requisition scenarios."""

    @property
    def best_baseline(self) -> tuple[str, Measures]:
        """The baseline with the higher average precision: the one Dawa has to beat."""
        return max(self.baselines.items(), key=lambda kv: (kv[1].average_precision, kv[0]))

    @property
    def ap_ratio(self) -> float:
        """Dawa's average precision over the better baseline's (inf when the baselines find nothing)."""
        best = self.best_baseline[1].average_precision
        if best == 0:
            return math.inf if self.dawa.average_precision > 0 else math.nan
        return self.dawa.average_precision / best


def evaluate(dataset_dir: Path, *, workdir: Path | None = None, progress: Progress | None = None,
             truth: Path | None = None, requisitions: tuple[int, str] | None = None) -> Evaluation:
    """Import ``dataset_dir`` into a scratch SQLite database, scan it, and score Dawa and the
    baselines against its truth.csv.

    Requisitions are not in the data contract's files, so a data set holds none. With
    ``requisitions=(seed, noise)`` every supplied facility prepares and submits its last month's
    requisition after the import, with the two requisition scenarios injected
    (sample_data.requisitions), and the requisition detector is scored against them on its own;
    their flags stay in the main queue, where truth.csv knows nothing of them.

    The database lives in a temporary folder, or in ``workdir`` (kept afterwards, to look at the
    flags with the other commands; an earlier evaluation database there is replaced).
    """
    dataset_dir = Path(dataset_dir)
    progress = progress or (lambda phase, done, total: None)
    truth_rows = Truth.from_csv(Path(truth) if truth is not None else dataset_dir / "truth.csv")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="dawa-evaluate-") as tmp:
            return _evaluate(dataset_dir, Path(tmp), truth_rows, progress, requisitions)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return _evaluate(dataset_dir, workdir, truth_rows, progress, requisitions)


def _evaluate(dataset_dir: Path, folder: Path, truth: Truth, progress: Progress,
              requisitions: tuple[int, str] | None = None) -> Evaluation:
    db = folder / "evaluate.sqlite"
    for old in folder.glob(db.name + "*"):
        old.unlink()
    engine = make_engine(f"sqlite:///{db}")
    seconds: dict[str, float] = {}
    try:
        migrations.upgrade(engine)
        with session_factory(engine)() as s:
            t = time.perf_counter()
            imported = import_dataset(s, dataset_dir, progress=progress)
            s.commit()
            seconds["import"] = time.perf_counter() - t
            _check_truth_in_ledger(s, truth, dataset_dir)
            requisition_truth = None
            if requisitions is not None:
                from sample_data.requisitions import inject

                requisition_truth = inject(s, seed=requisitions[0], noise=requisitions[1])
                s.commit()
            t = time.perf_counter()
            report = scan.run(s, force=True, progress=progress)
            s.commit()
            seconds["scan"] = time.perf_counter() - t
            rows = query(s)
            ranking = [tuple(r.entry_ids.split(";")) if r.entry_ids else () for r in rows]
            budget = BUDGET_PER_INCIDENT * len(truth.scenario_of)
            dawa = measure(ranking, truth, budget)
            found_by = {i: f"#{rank} {rows[rank - 1].detector} ({rows[rank - 1].subject} "
                           f"{rows[rank - 1].subject_id}, score {rows[rank - 1].score:.3f})"
                        for i, rank in dawa.first_found.items()}
            false_alarms = tuple(f"#{n} {r.detector} | score {r.score:.3f} | {r.facility_code} | {r.reason[:180]}"
                                 for n, (r, ev) in enumerate(zip(rows, ranking), start=1)
                                 if not truth.revealed(ev))[:FALSE_ALARMS_SHOWN]
            t = time.perf_counter()
            rounds = review_rounds(s, truth, budget, REVIEW_ROUNDS)
            s.commit()
            seconds["review"] = time.perf_counter() - t
        scored: dict[str, Measures] = {}
        with session_factory(engine, read_only=True)() as s:
            t = time.perf_counter()
            frames = features.build(s)
            for i, (name, baseline) in enumerate(baselines.BASELINES.items()):
                progress("baselines", i, len(baselines.BASELINES))
                scored[name] = measure(baseline(frames), truth, budget)
            progress("baselines", len(baselines.BASELINES), len(baselines.BASELINES))
            seconds["baselines"] = time.perf_counter() - t
            requisition_scores = None
            if requisition_truth is not None:
                from anomaly.detectors.requisitions import detect as detect_requisitions
                from sample_data.requisitions import score as score_requisitions

                hits = detect_requisitions(frames)
                recall, ap = score_requisitions(hits, requisition_truth)
                requisition_scores = (recall, ap, len(hits), len(requisition_truth))
    finally:
        engine.dispose()
    detectors = tuple(k for k in report.seconds if k not in ("features", "persist"))
    return Evaluation(dataset=dataset_dir, entries=imported.entries_added + imported.entries_already_present,
                      incidents=truth.incidents_per_scenario, budget=budget, detectors=detectors,
                      dawa=dawa, baselines=scored, seconds=seconds, review=tuple(rounds), found_by=found_by,
                      false_alarms=false_alarms, requisitions=requisition_scores,
                      requisition_scenarios=requisitions)


REVIEW_ROUNDS = 2
AUDITOR = "evaluation"


def review_rounds(session, truth: Truth, budget: int, rounds: int) -> list[Measures]:
    """Simulate auditors at work: each round they review the top ``budget`` open flags, confirm
    those that point to an incident and dismiss the rest (the verdicts come from the truth), and
    the ranking learns from the verdicts (anomaly.flags.rerank). After each round the queue they
    see is scored: the confirmed cases in the order they were found, then the open flags in their
    new order (dismissed ones are gone)."""
    from datetime import datetime, timezone

    from anomaly.flags import rerank
    from anomaly.models import Flag, Verdict

    confirmed: list[tuple[str, ...]] = []
    out = []
    now = datetime.now(timezone.utc)
    for _ in range(rounds):
        queue = query(session, status="open")
        for row in queue[:budget]:
            evidence = tuple(row.entry_ids.split(";")) if row.entry_ids else ()
            verdict = "confirmed" if truth.revealed(evidence) else "dismissed"
            session.add(Verdict(flag_id=row.flag_id, verdict=verdict, comment=None, decided_by=AUDITOR,
                                decided_at=now))
            session.get(Flag, row.flag_id).status = verdict
            if verdict == "confirmed":
                confirmed.append(evidence)
        rerank(session)
        reordered = [tuple(r.entry_ids.split(";")) if r.entry_ids else () for r in query(session, status="open")]
        out.append(measure(confirmed + reordered, truth, budget))
    return out


def _check_truth_in_ledger(session, truth: Truth, dataset_dir: Path) -> None:
    """Evidence that is not in the ledger would make every incident look missed: refuse instead."""
    wanted = sorted(truth.incidents_of)
    present: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        present.update(session.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.entry_id.in_(chunk))))
    absent = [e for e in wanted if e not in present]
    if absent:
        raise NoGroundTruth(f"{len(absent)} evidence entries of {dataset_dir / 'truth.csv'} are not in its "
                            f"ledger (first: {absent[0]}): truth and ledger come from different data sets")


# ---------------------------------------------------------------------------------------- report

def _fmt(value: float) -> str:
    return f"{value:.2f}"


def format_report(evaluation: Evaluation) -> str:
    """A plain-text table, Dawa beside each baseline, that reads the same in a terminal or a log."""
    ev = evaluation
    systems = [(DAWA, ev.dawa), *ev.baselines.items()]
    label_w = max(38, *(len(f"  {s} ({n})") + 2 for s, n in ev.incidents.items()))
    widths = [max(8, len(name)) + 2 for name, _m in systems]

    def row(label: str, values: list[str]) -> str:
        return f"{label:<{label_w}}" + "".join(f"{v:>{w}}" for v, w in zip(values, widths))

    n_incidents = sum(ev.incidents.values())
    lines = [
        f"Detection quality on {ev.dataset}",
        f"{ev.entries:,} ledger entries; {n_incidents} incidents in {len(ev.incidents)} scenarios; "
        f"review budget {ev.budget} flags ({BUDGET_PER_INCIDENT} per incident)",
        f"detectors: {', '.join(ev.detectors) or '(none)'}",
        "",
        row("measure", [name for name, _m in systems]),
        row("-" * (label_w - 2), ["-" * (w - 2) for w in widths]),
        row("incident recall at budget", [_fmt(m.recall_at_budget) for _n, m in systems]),
        row("flag precision at budget", [_fmt(m.precision_at_budget) for _n, m in systems]),
        row("average precision (incidents)", [_fmt(m.average_precision) for _n, m in systems]),
        row("incident recall, whole ranking", [_fmt(m.recall_all) for _n, m in systems]),
        row("flags ranked", [f"{m.flags:,}" for _n, m in systems]),
        "",
        row("recall at budget by scenario (incidents)", []),
    ]
    for scenario, count in ev.incidents.items():
        lines.append(row(f"  {scenario} ({count})", [_fmt(m.scenario_recall.get(scenario, 0.0)) for _n, m in systems]))
    best_name, best = ev.best_baseline
    ratio = ev.ap_ratio
    shown = "n/a (no one found anything)" if math.isnan(ratio) else (
        "inf (the baselines found nothing)" if math.isinf(ratio) else f"{ratio:.1f}x")
    lines += [
        "",
        f"average precision, Dawa / better baseline ({best_name}, {best.average_precision:.2f}): {shown}",
    ]
    if ev.review:
        lines.append("after simulated review rounds (top budget reviewed, verdicts from the truth, re-ranked): "
                     + ", ".join(f"round {i}: AP {m.average_precision:.2f}, recall at budget {m.recall_at_budget:.2f}"
                                 for i, m in enumerate(ev.review, start=1)))
    if ev.requisitions is not None:
        recall, ap, findings, incidents = ev.requisitions
        seed, noise = ev.requisition_scenarios
        lines.append(f"requisition scenarios (injected after the import, seed {seed}, noise {noise}): "
                     f"recall {recall:.2f}, AP {ap:.2f}, {findings} findings for {incidents} incidents")
    missed = ev.dawa.missed()
    if missed:
        lines.append(f"incidents Dawa missed within the budget: {', '.join(missed)}")
    lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in ev.seconds.items()))
    return "\n".join(lines) + "\n"
