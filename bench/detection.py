"""Detection benchmark, run by hand: `dawa evaluate` on a data set the detectors were not tuned on.

    .venv/bin/python bench/detection.py [--seed 11] [--scale 1] [--workdir /tmp/dawa-bench-detection]

Detectors are developed against sample_data/small (seed 1); scoring them on another seed and size
shows whether their thresholds generalise or were fitted to one set. The generated set is cached
in the work folder. Prints the evaluation report, then the targets:
incident recall at budget >= 0.9, average precision >= 0.8, every scenario's recall at budget
>= 0.8, and average precision at least twice the better naive baseline's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly.evaluate import evaluate, format_report  # noqa: E402
from sample_data.generator import generate  # noqa: E402

RECALL, AP, SCENARIO_RECALL, AP_RATIO = 0.9, 0.8, 0.8, 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-bench-detection"))
    args = ap.parse_args()

    data = args.workdir / f"seed{args.seed}-scale{args.scale:g}"
    if not (data / "truth.csv").exists():
        t = time.perf_counter()
        summary = generate(data, seed=args.seed, scale=args.scale)
        print(f"generated {data}: {summary.ledger_rows:,} ledger rows in {time.perf_counter() - t:.0f} s",
              flush=True)
    ev = evaluate(data, workdir=args.workdir / "db")
    print(format_report(ev))
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    rows = [("incident recall at budget", ev.dawa.recall_at_budget, RECALL),
            ("average precision", ev.dawa.average_precision, AP)]
    rows += [(f"recall at budget: {s}", r, SCENARIO_RECALL) for s, r in ev.dawa.scenario_recall.items()]
    rows.append((f"AP / better baseline ({ev.best_baseline[0]})", ev.ap_ratio, AP_RATIO))
    print(f"{'target':<48}{'figure':>10}{'wanted':>10}")
    missed = 0
    for label, figure, wanted in rows:
        ok = figure >= wanted
        missed += not ok
        print(f"{label:<48}{figure:>10.2f}{'>= ' + format(wanted, 'g'):>10}  {'ok' if ok else 'MISSED'}")
    print(f"\n{len(rows) - missed} of {len(rows)} targets met")


if __name__ == "__main__":
    main()
