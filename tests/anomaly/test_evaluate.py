"""Evaluation: exact figures on hand-made rankings, and an end-to-end run on the committed set
that holds the detectors to the recall they reach today."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from anomaly.baselines import _modified_z
from anomaly.evaluate import (Evaluation, NoGroundTruth, Truth, evaluate, format_report, measure)
from web.cli.main import app
from sample_data import SMALL


# Measured with the prescriptions, no_prescription and patients detectors: recall at budget 0.40
# (8 of 20 incidents: over_dispense, ghost_patient, deceased_patient, no_prescription_controlled),
# AP 0.38 against 0.13 for the better baseline. Raise it as detectors are added.
SMALL_RECALL_FLOOR = 0.40


@pytest.fixture
def truth() -> Truth:
    # I1 (scenario a) rests on e1 and e2, I2 (a) on e3, I3 (b) on e4.
    return Truth.from_rows([("I1", "a", "e1"), ("I1", "a", "e2"), ("I2", "a", "e3"), ("I3", "b", "e4")])


RANKING = [("x1",), ("e1",), ("e2", "x3"), ("e3", "e4"), ("x2",)]
"""Rank 1 misses; rank 2 finds I1; rank 3 touches I1 again (not a new find); rank 4 finds I2 and
I3 at once; rank 5 misses."""


def test_measures_at_a_budget_that_covers_every_find(truth):
    m = measure(RANKING, truth, budget=4)
    assert m.flags == 5
    assert m.recall_at_budget == 1.0
    assert m.precision_at_budget == 3 / 4  # ranks 2, 3, 4 touch an incident
    # Hits at ranks 2 and 4; I1 takes 1/2, I2 and I3 both take 2/4.
    assert m.average_precision == pytest.approx((1 / 2 + 2 / 4 + 2 / 4) / 3)
    assert m.first_found == {"I1": 2, "I2": 4, "I3": 4}
    assert m.scenario_recall == {"a": 1.0, "b": 1.0}
    assert m.missed() == []


def test_measures_at_a_tight_budget(truth):
    m = measure(RANKING, truth, budget=2)
    assert m.recall_at_budget == pytest.approx(1 / 3)
    assert m.precision_at_budget == 1 / 2
    assert m.scenario_recall == {"a": 0.5, "b": 0.0}
    assert m.recall_all == 1.0  # AP and whole-ranking recall do not depend on the budget
    assert m.average_precision == pytest.approx(0.5)
    assert m.missed() == ["I2", "I3"]


def test_never_found_incident_counts_zero_and_short_ranking_is_its_own_denominator(truth):
    m = measure([("e4",), ("x",), ("e1",)], truth, budget=6)
    assert m.average_precision == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m.recall_at_budget == pytest.approx(2 / 3) and m.recall_all == pytest.approx(2 / 3)
    assert m.precision_at_budget == pytest.approx(2 / 3)  # 3 flags reviewed, not 6
    assert m.scenario_recall == {"a": 0.5, "b": 1.0}


def test_perfect_and_empty_rankings(truth):
    perfect = measure([("e2",), ("e3",), ("e4",)], truth, budget=6)
    assert (perfect.recall_at_budget, perfect.precision_at_budget, perfect.average_precision) == (1.0, 1.0, 1.0)
    empty = measure([], truth, budget=6)
    assert (empty.recall_at_budget, empty.precision_at_budget, empty.average_precision, empty.flags) == (0, 0, 0, 0)


def test_ratio_and_report_on_hand_made_figures(truth):
    dawa = measure(RANKING, truth, budget=6)
    weak = measure([("x1",), ("x2",), ("e4",)], truth, budget=6)  # AP (1/3) / 3
    none = measure([("x1",)], truth, budget=6)
    ev = Evaluation(Path("set"), 10, truth.incidents_per_scenario, 6, ("p",), dawa,
                    {"z-score": weak, "isolation forest": none}, {"scan": 0.1})
    assert ev.best_baseline[0] == "z-score"
    assert ev.ap_ratio == pytest.approx(0.5 / (1 / 9))
    text = format_report(ev)
    assert "4.5x" in text and "a (2)" in text and "b (1)" in text
    header = next(line for line in text.splitlines() if line.startswith("measure"))
    assert header.split()[1:] == ["Dawa", "z-score", "isolation", "forest"]
    nothing = Evaluation(Path("set"), 10, truth.incidents_per_scenario, 6, (), dawa,
                         {"z-score": none}, {})
    assert math.isinf(nothing.ap_ratio) and "inf" in format_report(nothing)


def test_truth_from_csv(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("incident_id,scenario,entry_id,facility_code,description\n"
                    "I1,a,e1,H1,x\nI1,a,e2,H1,x\nI2,b,e2,H1,y\n", encoding="utf-8")
    t = Truth.from_csv(path)
    assert t.incidents_per_scenario == {"a": 1, "b": 1}
    assert t.revealed(["e2", "zz"]) == {"I1", "I2"}
    with pytest.raises(NoGroundTruth):
        Truth.from_csv(tmp_path / "absent.csv")
    path.write_text("incident_id,scenario,entry_id\n", encoding="utf-8")
    with pytest.raises(NoGroundTruth):
        Truth.from_csv(path)


def test_modified_z_falls_back_to_mean_deviation_when_mad_is_zero():
    z = _modified_z(np.array([10.0] * 9 + [100.0, 5.0, 6.0, 7.0]), np.array(["A"] * 10 + ["B"] * 3))
    assert z[9] == pytest.approx(90 / (9 * 1.253314))  # MAD 0: mean absolute deviation 9
    assert z[0] == 0.0
    assert z[12] == pytest.approx(0.6745 * 1 / 1)  # item B: median 6, MAD 1


@pytest.fixture(scope="module")
def small_workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def small_evaluation(small_workdir):
    return evaluate(SMALL, workdir=small_workdir)


def test_small_set_end_to_end(small_evaluation):
    ev = small_evaluation
    with (SMALL / "truth.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    scenarios = {r["scenario"] for r in rows}
    incidents = {r["incident_id"] for r in rows}
    assert set(ev.incidents) == scenarios and sum(ev.incidents.values()) == len(incidents)
    assert ev.budget == 2 * len(incidents)
    assert set(ev.baselines) == {"z-score", "isolation forest"}
    for m in (ev.dawa, *ev.baselines.values()):
        assert set(m.scenario_recall) == scenarios
    text = format_report(ev)
    for scenario in scenarios:
        assert f"  {scenario} (" in text
    assert ev.dawa.recall_at_budget >= SMALL_RECALL_FLOOR, text
    assert ev.dawa.average_precision > ev.best_baseline[1].average_precision, text
    assert ev.dawa.precision_at_budget >= 0.9, text


def test_evaluate_keeps_its_database_in_workdir_and_replaces_it(small_workdir, small_evaluation):
    assert (small_workdir / "evaluate.sqlite").exists()
    again = evaluate(SMALL, workdir=small_workdir)  # a fresh database, not a second import on top
    assert again.entries == small_evaluation.entries
    assert again.dawa == small_evaluation.dawa and again.baselines == small_evaluation.baselines


def test_cli_prints_the_table(tmp_path):
    """With --requisitions the requisition scenarios are injected after the import and the
    requisition detector is scored against them beside the rest."""
    result = CliRunner().invoke(app, ["evaluate", str(SMALL), "--workdir", str(tmp_path), "--quiet",
                                      "--requisitions", "11", "--requisition-noise", "high"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "incident recall at budget" in out and "average precision, Dawa / better baseline" in out
    assert "Dawa" in out and "z-score" in out and "isolation forest" in out
    assert "over_dispense (2)" in out
    found = re.search(r"requisition scenarios \(injected after the import, seed 11, noise high\): "
                      r"recall ([0-9.]+), AP ([0-9.]+), (\d+) findings for (\d+) incidents", out)
    assert found, out
    recall, ap, findings, incidents = float(found[1]), float(found[2]), int(found[3]), int(found[4])
    assert incidents >= 2 and findings >= incidents and recall == 1.0 and ap >= 0.75


def test_cli_refuses_an_unknown_requisition_noise(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", str(SMALL), "--requisitions", "1", "--requisition-noise", "loud"])
    assert result.exit_code == 2 and "--requisition-noise must be one of low, high" in result.output


def test_cli_refuses_a_set_without_truth(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1
    assert "truth.csv" in result.output
