"""Requisition detector benchmark, run by hand: recall and average precision on generated data sets,
the WORST over several seeds and noise profiles, never the best.

    .venv/bin/python bench/requisition_detection.py [--seeds 3 5 7 11 12] [--scales 0.1]
                                                    [--noise low high] [--workdir /tmp/dawa-bench-reqdet]

Each set is generated (sample_data.generator), imported, and given a month of requisitions with the
injected over-requests and emergency sprees (sample_data.requisitions.inject, which names them in
its truth); the scan's frames are built as `dawa scan` builds them and the requisition detector's
findings are ranked by score. Requisitions are not in the data contract's CSV files, so `dawa
evaluate` (which reads a data set and its truth.csv) cannot carry them; this is its counterpart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import migrations  # noqa: E402
from anomaly import features  # noqa: E402
from anomaly.detectors.requisitions import detect  # noqa: E402
from sample_data.generator import generate  # noqa: E402
from sample_data.requisitions import NOISE, inject, score  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402
from stock.importer import import_dataset  # noqa: E402


def run(workdir: Path, seed: int, scale: float, noise: str) -> tuple[float, float, int, int]:
    data = workdir / f"seed{seed}-scale{scale:g}"
    if not (data / "truth.csv").exists():
        generate(data, seed=seed, scale=scale)
    db = workdir / f"seed{seed}-scale{scale:g}-{noise}.sqlite"
    db.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db}")
    migrations.upgrade(engine)
    with session_factory(engine)() as s:
        import_dataset(s, data)
        truth = inject(s, seed=seed, noise=noise)
        s.commit()
        frames = features.build(s)  # the requisition frame is read with the others, as the scan reads it
        hits = detect(frames)
    engine.dispose()
    db.unlink(missing_ok=True)
    recall, ap = score(hits, truth)
    return recall, ap, len(hits), len(truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7, 11, 12])
    ap.add_argument("--scales", type=float, nargs="+", default=[0.1])
    ap.add_argument("--noise", nargs="+", default=list(NOISE), choices=list(NOISE))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench-reqdet"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for scale in args.scales:
        for seed in args.seeds:
            for noise in args.noise:
                t = time.perf_counter()
                recall, ap_, findings, incidents = results[seed, scale, noise] = run(args.workdir, seed, scale, noise)
                print(f"seed {seed} scale {scale:g} noise {noise}: recall {recall:.2f}, AP {ap_:.2f} "
                      f"({findings} findings for {incidents} incidents, {time.perf_counter() - t:.0f} s)", flush=True)
    for measure, k in (("recall", 0), ("AP", 1)):
        key = min(results, key=lambda r: results[r][k])
        print(f"WORST {measure} over {len(results)} sets: {results[key][k]:.2f} (seed {key[0]}, scale {key[1]:g}, "
              f"noise {key[2]})")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
