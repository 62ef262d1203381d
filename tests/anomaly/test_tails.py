"""Findings measured against everything their detector examined (anomaly.tails): on hand-built
ledgers, and on a generated ledger with the shifted noise profile, judged against its truth."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from anomaly import scan
from anomaly.evaluate import BUDGET_PER_INCIDENT
from anomaly.export import query
from anomaly.tails import share_at_least
from stock.importer import import_dataset
from stock.masterdata import add_facility, add_item
from tests.anomaly.helpers import at, post_all, run, stocked
from tests.stock.builders import entry


def test_share_at_least_counts_the_population_at_or_above_each_value():
    population = pd.Series([1.0, 1.0, 1.0, 2.0, 3.0, np.nan])
    assert share_at_least(population, [1.0, 2.0, 3.0, 9.0]).tolist() == pytest.approx([5 / 6, 2 / 6, 1 / 6, 1 / 6])
    groups = pd.Series(["a", "a", "b", "b", "b", "b"])
    assert share_at_least(population, [1.0, 1.0], groups, ["a", "b"], total=10).tolist() == \
        pytest.approx([2 / 10, 3 / 10])


def test_a_large_shortfall_amid_a_month_of_small_ones_is_not_part_of_their_wave(session):
    """Six health centres count GLOVE at the month's end: five a few percent short (counting noise
    seen everywhere that month), one 40% short. Another centre comes up 40% short on INSG alone.
    The large GLOVE shortfall is as surprising as the lone one, and above the small ones."""
    stocked(session, facility="WH-C", item="GLOVE", quantity=100000)
    sites = [f"HC{i}" for i in range(3, 10)]
    for code in sites:
        add_facility(session, code, f"Health Centre {code}", "Tripoli", "health_center", parent_code="WH-C")
    session.commit()
    moves = []
    for i, code in enumerate(sites):
        item = "INSG" if code == "HC9" else "GLOVE"
        counted = 600 if code in ("HC3", "HC9") else 935
        moves += [entry("receipt", 1000, facility=code, item=item, at=at(2, 8 + i)),
                  entry("count", counted, facility=code, item=item, at=at(31, 20), entry_id=f"C-{code}")]
    post_all(session, *moves)
    scan.run(session, only=["counts"])
    session.commit()
    score = {r.entry_ids: r.score for r in query(session)}
    assert len(score) == 7
    assert score["C-HC3"] == pytest.approx(score["C-HC9"], abs=0.01)
    assert all(score["C-HC3"] > s for e, s in score.items() if e not in ("C-HC3", "C-HC9"))


def test_a_take_home_supply_without_prescription_outranks_routine_emergency_doses(session):
    """Single emergency doses of an injectable narcotic are given without a prescription every
    week; one dispensing of 40 morphine tablets without one happens once. The second is the finding."""
    stocked(session, quantity=5000)
    add_item(session, "MOR10I", "Morphine 10 mg/ml injection", "ml", controlled=True, atc_code="N02AA01")
    session.commit()
    moves = [entry("receipt", 500, item="MOR10I", at=at(1, 9), expiry_date=pd.Timestamp("2028-01-31").date())]
    for day in range(2, 26):
        moves.append(entry("dispense", 1, item="MOR10I", prescription_id=None, at=at(day, 3), entry_id=f"E{day}"))
        moves.append(entry("dispense", 10, prescription_id="RX1", at=at(day, 11)))
    moves.append(entry("dispense", 40, prescription_id=None, at=at(20, 15), entry_id="TAKE-HOME"))
    post_all(session, *moves)
    hits = run(session, "no_prescription")
    tail = {h.entry_ids[0]: h.details["tail"] for h in hits}
    assert len(tail) == 25
    assert all(tail["TAKE-HOME"] < t for e, t in tail.items() if e != "TAKE-HOME")
    scan.run(session, only=["no_prescription"])
    session.commit()
    assert query(session)[0].entry_ids == "TAKE-HOME"


# ---------------------------------------------------------------- a generated ledger

@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A small generated ledger with the shifted (doubled) legitimate noise, scanned; its ranking and
    truth. Seed 11 is one the rankings were developed on, not one the benchmark reports."""

    import migrations
    from sample_data.generator import generate
    from stock.db import make_engine, session_factory

    folder = tmp_path_factory.mktemp("shifted")
    generate(folder / "data", seed=11, scale=0.3, profile="shifted")
    engine = make_engine(f"sqlite:///{folder / 'db.sqlite'}")
    migrations.upgrade(engine)
    with session_factory(engine)() as s:
        import_dataset(s, folder / "data")
        s.commit()
        scan.run(s, force=True)
        s.commit()
        rows = [(r.detector, set(r.entry_ids.split(";")) if r.entry_ids else set()) for r in query(s)]
    engine.dispose()
    with (folder / "data" / "truth.csv").open(encoding="utf-8", newline="") as fh:
        truth = [(r["incident_id"], r["scenario"], r["entry_id"]) for r in csv.DictReader(fh)]
    return rows, truth


@pytest.mark.parametrize("scenario", ["count_shortfall", "no_prescription_controlled", "over_dispense"])
def test_generated_incidents_of_the_noisy_kinds_come_within_the_review_budget(shifted, scenario):
    """Small count shortfalls, emergency doses and whole packs are everywhere in this ledger; the
    injected shortfalls, take-home narcotics and multiple fills still come before an auditor's
    budget (BUDGET_PER_INCIDENT flags per incident of the ledger) runs out."""
    rows, truth = shifted
    evidence: dict[str, set] = {}
    for incident, s, entry_id in truth:
        if s == scenario:
            evidence.setdefault(incident, set()).add(entry_id)
    assert evidence
    budget = BUDGET_PER_INCIDENT * len({i for i, _s, _e in truth})
    for incident, entries in evidence.items():
        first = next(rank for rank, (_d, cited) in enumerate(rows) if cited & entries)
        assert first < budget, (incident, first, budget)
