"""The requisition detector on generated data sets: both injected scenarios found, ranked first,
on every seed and noise profile (the worst is what counts)."""

from __future__ import annotations

import pytest

from anomaly import features
from anomaly.detectors.requisitions import detect, requisition_frame
from sample_data.generator import generate
from sample_data.requisitions import NOISE, inject, score
from stock.db import session_factory
from stock.importer import import_dataset

RUNS = [(seed, noise) for seed in (11, 12) for noise in NOISE]


def measure(engine, folder, seed: int, noise: str) -> tuple[float, float]:
    Session = session_factory(engine)  # noqa: N806 - a session factory
    with Session() as s:
        import_dataset(s, folder)
        truth = inject(s, seed=seed, noise=noise)
        frames = features.build(s)
        frames.requisitions = requisition_frame(s)
        hits = detect(frames)
        print(f"{len(hits)} findings for {len(truth)} incidents")
        return score(hits, truth)


@pytest.mark.parametrize("seed,noise", RUNS)
def test_scenarios_are_found_on_generated_sets(sqlite_engine, tmp_path, seed, noise):
    generate(tmp_path / "set", seed=seed, scale=0.1)
    recall, ap = measure(sqlite_engine, tmp_path / "set", seed, noise)
    print(f"seed {seed} noise {noise}: recall {recall:.2f} AP {ap:.2f}")
    assert recall == 1.0 and ap >= 0.75
