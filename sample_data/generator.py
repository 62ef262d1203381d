"""Generate a realistic national data set in the contract's CSV format, with injected leakage.

``generate()`` writes facilities.csv, items.csv, patients.csv, prescriptions.csv and ledger.csv
exactly as the data contract describes them, plus truth.csv naming the ledger entries that are the
evidence of each injected incident. Detectors are developed and scored against it, the importer is
exercised by it, and the benchmarks scale it up, so three properties matter more than anything:

* **Accepted by a strict importer.** Rows replayed in ``occurred_at`` order never take a lot below
  zero, every code resolves, every new lot arrives with its expiry date.
* **Deterministic.** The same seed, scale, start and months give byte-identical files, so a score
  or a benchmark can be reproduced. Each stage draws from its own seeded stream.
* **Fast.** The bulk (patients, prescriptions, dispensings) is generated with numpy; only the stock
  simulation walks the rows one by one. Scale 1 gives about 70,000 ledger rows, scale 15 about a
  million.

``profile`` sets how much legitimate noise surrounds the incidents (see ``sample_data.legitimate``):
``standard`` (the default) has each seed draw its own rates of early refills, keyed-in mistakes,
recalls, short picks and the rest; ``shifted`` doubles them; ``plain`` has none of them and is
what ``sample_data/small`` was generated with.

Run by hand with ``python -m sample_data.generator OUT --seed 1 --scale 0.05 --profile shifted``.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from sample_data import demand, legitimate, scenarios
from sample_data.legitimate import counter, paperwork, staff
from sample_data.legitimate.profile import PROFILES, draw
from sample_data.legitimate.shelves import LegitimateStock
from sample_data.catalog import ITEMS
from sample_data.demand import ALIVE, build_patients, chronic_treatments
from sample_data.frames import GO_LIVE_DAYS, REVERSAL, Columns, Timeline, add_months, period_ending
from sample_data.network import KIND_NAMES, build_network
from sample_data.output import (FACILITY_COLUMNS, ITEM_COLUMNS, LEDGER_COLUMNS, PATIENT_COLUMNS,
                                PRESCRIPTION_COLUMNS, TRUTH_COLUMNS, assemble, format_days,
                                format_quantities, format_times, ledger_chunks, lookup, write_chunks,
                                write_csv)
from sample_data.supply import simulate, supply_cycles
from sample_data.truth import truth_rows

FILES = ("facilities.csv", "items.csv", "patients.csv", "prescriptions.csv", "ledger.csv", "truth.csv")


@dataclass(frozen=True)
class GenerationSummary:
    out_dir: Path
    rows: dict[str, int]
    """Data rows (header excluded) per file name."""
    incidents: dict[str, int]
    """Incidents written to truth.csv, per scenario."""
    ledger_rows: int
    seconds: float
    profile: str = "plain"
    behaviours: dict = field(default_factory=dict)
    """This seed's parameters of the legitimate behaviours and how many of each were written."""


# Independent streams per stage: changing how one stage draws leaves the others' data unchanged.
_STREAMS = ("network", "patients", "chronic", "fills", "acute", "extras", "scenarios", "supply", "shelf",
            "legit", "legit_counter", "legit_stock", "legit_staff", "legit_paper")
"""New streams go at the end: the existing ones stay what they were for every seed."""


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children)}


def run_tag(seed: int, scale: float, start: date, months: int, profile: str = "plain",
            until: date | None = None) -> str:
    """A short stamp of the parameters, in every entry and prescription id.

    Ids are stable for a given data set (re-importing it is a no-op) and differ between data sets,
    so two generated sets can be imported into one database without colliding.
    """
    text = f"dawa-sample|{seed}|{scale!r}|{start.isoformat()}|{months}"
    if profile != "plain":
        text += f"|{profile}"
    if until is not None and until != add_months(start, months):
        text += f"|until {until.isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def generate(out_dir: Path, seed: int = 1, scale: float = 1.0, start: date = date(2026, 1, 1),
             months: int = 6, profile: str = "standard", end: date | None = None) -> GenerationSummary:
    """Write a data set of the given size to ``out_dir`` (created if missing) and describe it.

    The period is ``months`` from ``start``; given ``end``, it is the ``months`` ending on that day
    instead (a demo's data end yesterday, so that today's stock positions have months of use)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if scale <= 0:
        raise ValueError("scale must be positive")
    if months < 1:
        raise ValueError("months must be at least 1")
    until = None
    if end is not None:
        start, until = period_ending(end, months)
    began = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = _streams(seed)
    tag = run_tag(seed, scale, start, months, profile, until)
    beh = draw(rng["legit"], profile)
    lrng = rng["legit_counter"]
    counts: dict[str, int] = {}
    tl = Timeline(start, months, until)
    if tl.n_days < GO_LIVE_DAYS + 14:
        raise ValueError("the period is too short to stock facilities and serve patients")

    net = build_network(rng["network"], scale)
    if beh:
        staff.shape_network(rng["legit_staff"], net, beh)
    pts = build_patients(rng["patients"], net, tl, scale)
    treatments = chronic_treatments(rng["chronic"], net, pts)
    n_inc = scenarios.incidents_per_scenario(scale)
    plan = scenarios.Plan()
    dying = scenarios.plan_deceased(rng["scenarios"], pts, treatments, tl, n_inc)

    fills = demand.chronic_fills(rng["fills"], net, pts, tl, treatments)
    if beh:
        counter.reshape_fills(lrng, net, pts, tl, fills, beh, keep_patients={p for p, _, _ in dying})
    ev_chronic, rx_chronic = demand.episodes_to_events(rng["fills"], net, tl, fills,
                                                       partial_rate=beh.partial_chronic if beh else 0.04,
                                                       rx_first=0, death_day=pts.death_day)
    acute = demand.acute_episodes(rng["acute"], net, pts, tl)
    ev_acute, rx_acute = demand.episodes_to_events(rng["acute"], net, tl, acute,
                                                   partial_rate=beh.partial_acute if beh else 0.02,
                                                   rx_first=len(rx_chronic), death_day=pts.death_day)
    normal = Columns.concat([ev_chronic, ev_acute])
    rx_table = Columns.concat([rx_chronic, rx_acute])
    plan.rx_next = len(rx_table)
    extras, dup, rev = demand.legitimate_extras(rng["extras"], net, tl, normal)

    srng = rng["scenarios"]
    scenarios.deceased_refills(srng, plan, net, pts, tl, treatments, fills, dying)
    scenarios.over_dispense(srng, plan, net, normal, rx_table["qty"], n_inc)
    scenarios.ghost_patients(srng, plan, net, pts, tl, n_inc)
    scenarios.doctor_shopping(srng, plan, net, pts, tl, n_inc)
    scenarios.no_prescription_controlled(srng, plan, net, pts, tl, n_inc)
    scenarios.off_hours_user(srng, plan, net, pts, tl, n_inc)
    scenarios.consumption_spike(srng, plan, net, pts, tl, normal, n_inc)
    scenarios.stock_incidents(srng, plan, net, tl, n_inc, len(supply_cycles(tl)))
    if plan.prescriptions:
        rx_table = Columns.concat([rx_table] + plan.prescriptions)
    legit_events: list[Columns] = []
    if beh:
        legit_ev, legit_rx, counts = legitimate.at_the_counter(lrng, net, pts, tl, normal, rx_table, fills, beh,
                                                               duplicated=dup["rx"])
        legit_events.append(legit_ev)
        if len(legit_rx):
            rx_table = Columns.concat([rx_table, legit_rx])

    # Static events in time order; a reversal keeps pointing at the duplicate it reverses.
    dup_first = len(normal) + len(extras)
    rev["ref"] = dup_first + np.arange(len(rev))
    ev = Columns.concat([normal, extras, dup, rev] + plan.events + legit_events)
    if beh:
        busy = {inc.facility for inc in plan.incidents} | {f for f, _ in plan.shrinkages} | \
            {f for f, _ in plan.count_shortfalls}
        clinics = counter.choose_new_clinics(lrng, net, tl, beh, busy)
        counter.open_clinics(lrng, net, ev, rx_table, clinics)
        counts["new_clinics"] = len(clinics)
    order = np.argsort(ev["t"], kind="stable")
    ev = ev.take(order)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    is_rev = ev["kind"] == REVERSAL
    ev["ref"][is_rev] = position[ev["ref"][is_rev]]

    tracked = [i for i, it in enumerate(ITEMS) if it.lot_tracked]
    short_dated = set()
    if tl.n_days >= 120:
        short_dated = set(rng["shelf"].choice(tracked, size=len(tracked) // 3, replace=False).tolist())
    if beh:
        stock = LegitimateStock(rng["supply"], net, tl, ev, count_shortfalls=plan.count_shortfalls,
                                shrinkages=plan.shrinkages, short_dated=short_dated, beh=beh,
                                plan_rng=rng["legit_stock"])
        sim = stock.run()
        counts.update(stock.stats)
    else:
        sim = simulate(rng["supply"], net, tl, ev, count_shortfalls=plan.count_shortfalls,
                       shrinkages=plan.shrinkages, short_dated=short_dated)

    # ------------------------------------------------------------------ files
    codes = net.codes
    rows: dict[str, int] = {}
    rows["facilities.csv"] = write_csv(out_dir / "facilities.csv", FACILITY_COLUMNS, [
        codes, net.names, [net.region_names[r] for r in net.region.tolist()],
        [KIND_NAMES[k] for k in net.kind.tolist()], lookup(codes, net.parent)])
    rows["items.csv"] = write_csv(out_dir / "items.csv", ITEM_COLUMNS, [
        [it.code for it in ITEMS], [it.name for it in ITEMS], [it.atc_code for it in ITEMS],
        [it.form for it in ITEMS], [it.unit for it in ITEMS],
        ["true" if it.controlled else "false" for it in ITEMS],
        [("" if it.max_dispense is None else
          format_quantities(np.array([demand.ticks(i, it.max_dispense)]), np.array([i]))[0])
         for i, it in enumerate(ITEMS)]])
    n_reg = pts.registered
    deceased = np.where(pts.death_day < ALIVE, pts.death_day, 0)
    died = format_days(start, deceased)
    died[pts.death_day >= ALIVE] = ""
    rows["patients.csv"] = write_csv(out_dir / "patients.csv", PATIENT_COLUMNS, [
        pts.cards[:n_reg], pts.birth_year.astype(str), pts.sex, lookup(codes, pts.home), died])

    rx_ids = [f"RX-{tag}-{i:07d}" for i in range(len(rx_table))]
    item_codes = np.array([it.code for it in ITEMS], dtype=object)

    def prescription_chunks(size: int = 50_000):
        for lo in range(0, len(rx_table), size):
            rx = rx_table.take(slice(lo, lo + size))
            yield [rx_ids[lo:lo + size], lookup(pts.cards, rx["card"]), lookup(codes, rx["fac"]),
                   lookup(net.prescriber_ids, rx["prescriber"]), item_codes[rx["item"]],
                   format_quantities(rx["qty"], rx["item"]), rx["days"].astype(str),
                   format_days(start, rx["issued"]), rx["diag"]]

    rows["prescriptions.csv"] = write_chunks(out_dir / "prescriptions.csv", PRESCRIPTION_COLUMNS,
                                             prescription_chunks())

    led = assemble(sim, ev, net.user_offset)
    chunks = ledger_chunks(led, sim, tag=tag, start=start, codes=codes, cards=pts.cards, rx_ids=rx_ids,
                           user_ids=net.user_ids)
    columns = LEDGER_COLUMNS
    if beh:
        counts.update(staff.assign(rng["legit_staff"], net, tl, led, beh))
        recorded, paper = paperwork.apply(rng["legit_paper"], net, tl, led, beh)
        counts.update(paper)
        chunks = _with_recorded_at(chunks, recorded, start)
        columns = LEDGER_COLUMNS + ("recorded_at",)
    rows["ledger.csv"] = write_chunks(out_dir / "ledger.csv", columns, chunks)

    truth, per_scenario = truth_rows(plan.incidents, led, sim, net=net, tl=tl, cards=pts.cards, rx_ids=rx_ids,
                                     rx_qty=rx_table["qty"], tag=tag, user_ids=net.user_ids)
    rows["truth.csv"] = write_csv(out_dir / "truth.csv", TRUTH_COLUMNS,
                                  [list(c) for c in zip(*truth)] if truth else [[] for _ in TRUTH_COLUMNS])
    incidents = {s: per_scenario.get(s, 0) for s in scenarios.SCENARIOS}
    behaviours = {**beh.as_dict(), **counts} if beh else {}
    return GenerationSummary(out_dir=out_dir, rows=rows, incidents=incidents, ledger_rows=sim.n_rows,
                             seconds=round(time.perf_counter() - began, 3), profile=profile,
                             behaviours=behaviours)


def _with_recorded_at(chunks, recorded: np.ndarray, start: date):
    """The ledger's chunks with a ``recorded_at`` column (empty where -1)."""
    lo = 0
    for cols in chunks:
        n = len(cols[0])
        rec = recorded[lo:lo + n]
        text = format_times(start, np.maximum(rec, 0))
        text[rec < 0] = ""
        lo += n
        yield cols + [text]


def main(argv: list[str] | None = None) -> GenerationSummary:
    parser = argparse.ArgumentParser(prog="python -m sample_data.generator",
                                     description="Write a generated Dawa data set (contract CSVs and truth.csv).")
    parser.add_argument("out", type=Path, help="folder to write the CSV files into")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 is about 70,000 ledger rows")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 1))
    when.add_argument("--end", type=date.fromisoformat, default=None,
                      help="last day of the period (instead of --start): the months up to that day")
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--profile", choices=PROFILES, default="standard",
                        help="legitimate noise: standard, shifted (doubled) or plain (none)")
    args = parser.parse_args(argv)
    summary = generate(args.out, seed=args.seed, scale=args.scale, start=args.start, months=args.months,
                       profile=args.profile, end=args.end)
    for name, n in summary.rows.items():
        print(f"{name:20} {n:>10,} rows")
    print("incidents: " + ", ".join(f"{k} {v}" for k, v in summary.incidents.items()))
    if summary.behaviours:
        print("legitimate behaviours (" + summary.profile + "): " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.behaviours.items()))
    print(f"{summary.ledger_rows:,} ledger rows in {summary.seconds:.1f} s")
    return summary


if __name__ == "__main__":
    main()
