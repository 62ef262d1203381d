"""Injected leakage: the incidents detection is measured against.

Each incident is a small, plausible story told with ordinary ledger rows: a forged refill for a
patient who has died, a night-time run of narcotics at a health centre, a count that comes up a
third short. The rows carry an incident number through the simulation so that ``truth.csv`` can
name exactly the entries that are its evidence, and nothing else.

Incidents whose shape depends on stock (what is on the shelf to write off, which waybill to skim,
which lot to come up short on) are only *planned* here and resolved by the stock simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sample_data.catalog import DIVERSION_NONCONTROLLED, ITEMS, NARCOTIC_ORAL
from sample_data.demand import (ALIVE, ITEM_INDEX, REGIMENS, Patients, align, clock, open_day,
                                pick_prescriber, pick_user, ticks)
from sample_data.frames import (DAY, GO_LIVE_DAYS, HOUR, R_DAMAGED, R_EXPIRED, WRITEOFF, Columns,
                                Timeline, events, prescriptions)
from sample_data.network import HEALTH_CENTER, HOSPITAL, PHARMACY, Network

SCENARIOS = (
    "over_dispense",
    "ghost_patient",
    "deceased_patient",
    "doctor_shopping",
    "no_prescription_controlled",
    "count_shortfall",
    "premature_writeoff",
    "transfer_shrinkage",
    "off_hours_user",
    "consumption_spike",
)

TYPICAL = {"TRM50C": (20, 30, 40, 60), "PGB75C": (28, 56), "DZP5T": (20, 30), "MOR10T": (30, 60),
           "INSG100": (9, 12, 15), "SAL100I": (1, 2), "OME20C": (28, 56), "ATV20T": (30, 60),
           "AMX500C": (21, 42), "MET500T": (60, 90, 120)}
DIAGNOSIS = {"TRM50C": "M54.5", "PGB75C": "G62.9", "DZP5T": "F41.1", "MOR10T": "C80.1"}


@dataclass
class Incident:
    number: int
    scenario: str
    facility: int
    info: dict = field(default_factory=dict)

    @property
    def incident_id(self) -> str:
        return f"INC-{self.number:04d}"


@dataclass
class Plan:
    """Incidents and what they add to the static ledger events and the prescriptions."""

    incidents: list[Incident] = field(default_factory=list)
    events: list[Columns] = field(default_factory=list)
    prescriptions: list[Columns] = field(default_factory=list)
    count_shortfalls: dict[tuple[int, int], tuple[int, float]] = field(default_factory=dict)
    """(facility, month) -> (incident number, fraction missing)."""
    shrinkages: dict[tuple[int, int], tuple[int, str, float]] = field(default_factory=dict)
    """(receiving facility, supply cycle) -> (incident number, 'missing' | 'short', fraction)."""
    rx_next: int = 0

    def incident(self, scenario: str, facility: int, **info) -> Incident:
        inc = Incident(len(self.incidents) + 1, scenario, int(facility), info)
        self.incidents.append(inc)
        return inc

    def add_prescriptions(self, **cols) -> np.ndarray:
        n = len(cols["card"])
        table = prescriptions(n, **cols)
        self.prescriptions.append(table)
        ids = self.rx_next + np.arange(n)
        self.rx_next += n
        return ids


def incidents_per_scenario(scale: float) -> int:
    """Two of each in a test set, growing in proportion to the data."""
    return max(2, round(6 * scale))


def _daytime(rng: np.random.Generator, net: Network, fac: np.ndarray) -> np.ndarray:
    """A time within opening hours; hospitals here are taken in their day shift."""
    kind = net.kind[fac].copy()
    sec, _ = clock(rng, np.where(kind == HOSPITAL, HEALTH_CENTER, kind))
    return sec


def _registered_alive(rng: np.random.Generator, pts: Patients, region: int, n: int, before_day: int) -> np.ndarray:
    pool = np.flatnonzero((pts.region == region) & (pts.death_day >= before_day) & (pts.age >= 18))
    if len(pool) == 0:
        pool = np.flatnonzero(pts.death_day >= before_day)
    return rng.choice(pool, size=n, replace=len(pool) < n)


def _weighted(rng: np.random.Generator, net: Network, kinds: tuple[int, ...], n: int) -> np.ndarray:
    cand = np.flatnonzero(np.isin(net.kind, kinds))
    w = net.weight[cand]
    return rng.choice(cand, size=n, replace=True, p=w / w.sum())


def _rx_facility(rng: np.random.Generator, net: Network, fac: int) -> int:
    """Where a prescription presented at ``fac`` was written: itself, or a prescribing facility nearby."""
    if net.kind[fac] in (HOSPITAL, HEALTH_CENTER):
        return int(fac)
    cand = net.in_region(int(net.region[fac]), (HOSPITAL, HEALTH_CENTER))
    return int(cand[rng.integers(0, len(cand))])


# ---------------------------------------------------------------- planned before demand

def plan_deceased(rng: np.random.Generator, pts: Patients, treatments: Columns, tl: Timeline,
                  n: int) -> list[tuple[int, int, int]]:
    """Choose patients on a chronic uncontrolled treatment who will die during the period.

    Their real refills stop at death (the demand stage truncates them); the incident is the refills
    that carry on afterwards. Returns (patient, treatment row, day of death).
    """
    if tl.n_days < GO_LIVE_DAYS + 75:
        return []
    setting_any = np.array([REGIMENS[g].setting == "any" for g in treatments["regimen"]], dtype=bool)
    uncontrolled = ~np.array([ITEMS[i].controlled for i in treatments["item"]], dtype=bool)
    ok = setting_any & uncontrolled & (pts.death_day[treatments["patient"]] == ALIVE) & \
        (pts.age[treatments["patient"]] >= 40) & (treatments["days"] <= 30)
    rows = np.flatnonzero(ok)
    _, first = np.unique(treatments["patient"][rows], return_index=True)
    rows = rows[np.sort(first)]
    if len(rows) == 0:
        return []
    rows = rng.choice(rows, size=min(n, len(rows)), replace=False)
    out = []
    for r in rows.tolist():
        p = int(treatments["patient"][r])
        death = int(rng.integers(GO_LIVE_DAYS + 35, tl.n_days - 35))
        pts.death_day[p] = death
        out.append((p, r, death))
    return out


def deceased_refills(rng, plan: Plan, net: Network, pts: Patients, tl: Timeline, treatments: Columns,
                     fills: Columns, chosen: list[tuple[int, int, int]]) -> None:
    """Refills collected on a dead patient's card, each on a new prescription, as if nothing changed."""
    for p, r, death in chosen:
        mine = fills["day"][fills["treatment"] == r]
        ds = int(treatments["days"][r])
        last = int(mine.max()) if len(mine) else death - ds
        days = []
        d = last + ds + int(rng.integers(-2, 3))
        if d <= death:
            d = death + int(rng.integers(2, 7))
        while d < tl.n_days and len(days) < 3:
            days.append(d)
            d += ds + int(rng.integers(-2, 3))
        if not days:
            continue
        fac = int(treatments["disp"][r])
        days = open_day(np.array(days), np.full(len(days), fac), net, tl)
        days = days[(days > death) & (days < tl.n_days)]
        if len(days) == 0:
            continue
        k = len(days)
        inc = plan.incident("deceased_patient", fac, card=p, death=death, item=int(treatments["item"][r]))
        item = int(treatments["item"][r])
        rx = plan.add_prescriptions(card=np.full(k, p), fac=np.full(k, int(treatments["rx_fac"][r])),
                                    prescriber=np.full(k, int(treatments["prescriber"][r])),
                                    item=np.full(k, item), qty=np.full(k, int(treatments["qty"][r])),
                                    days=np.full(k, ds), issued=days,
                                    diag=np.full(k, REGIMENS[int(treatments["regimen"][r])].diagnosis, dtype=object))
        facs = np.full(k, fac)
        plan.events.append(events(k, t=days * DAY + _daytime(rng, net, facs), fac=fac, item=item,
                                  qty=int(treatments["qty"][r]), card=p, rx=rx,
                                  user=pick_user(rng, net, facs), inc=inc.number, strict=True))


# ---------------------------------------------------------------- planned on top of demand

def over_dispense(rng, plan: Plan, net: Network, normal: Columns, rx_qty: np.ndarray, n: int) -> None:
    """Turn some complete fills into fills two and a half to four times the prescription."""
    full = np.flatnonzero((normal["rx"] >= 0) & (normal["qty"] == rx_qty[np.maximum(normal["rx"], 0)])
                          & (normal["inc"] < 0))
    _, first = np.unique(normal["rx"][full], return_index=True)
    full = full[np.sort(first)]
    if len(full) == 0:
        return
    pick = rng.choice(full, size=min(n, len(full)), replace=False)
    for j in pick.tolist():
        item = int(normal["item"][j])
        factor = float(rng.uniform(2.5, 4.0))
        q = int(align(np.array([int(normal["qty"][j] * factor)]), np.array([item]))[0])
        inc = plan.incident("over_dispense", int(normal["fac"][j]), rx=int(normal["rx"][j]),
                            prescribed=int(normal["qty"][j]), item=item)
        normal["qty"][j] = q
        normal["inc"][j] = inc.number
        normal["strict"][j] = True


def ghost_patients(rng, plan: Plan, net: Network, pts: Patients, tl: Timeline, n: int) -> None:
    """One staff member dispensing to a few health cards that belong to nobody."""
    facs = _weighted(rng, net, (HEALTH_CENTER, PHARMACY), n)
    for fac in facs.tolist():
        k = int(rng.integers(3, 7))
        cards = pts.add_unregistered(int(rng.integers(2, 5)))
        item_code = DIVERSION_NONCONTROLLED[int(rng.integers(0, len(DIVERSION_NONCONTROLLED)))]
        item = ITEM_INDEX[item_code]
        d0 = int(rng.integers(GO_LIVE_DAYS + 3, max(GO_LIVE_DAYS + 4, tl.n_days - 22)))
        days = open_day(d0 + np.sort(rng.integers(0, 21, k)), np.full(k, fac), net, tl)
        days = np.minimum(days, tl.n_days - 1)
        user = int(pick_user(rng, net, np.array([fac]))[0])
        qty = np.array([ticks(item, q) for q in rng.choice(TYPICAL[item_code], k)])
        inc = plan.incident("ghost_patient", fac, user=user, item=item, cards=len(cards))
        facs_k = np.full(k, fac)
        plan.events.append(events(k, t=days * DAY + _daytime(rng, net, facs_k), fac=fac, item=item, qty=qty,
                                  card=cards[np.arange(k) % len(cards)], user=user, inc=inc.number,
                                  strict=True))


def doctor_shopping(rng, plan: Plan, net: Network, pts: Patients, tl: Timeline, n: int) -> None:
    """One patient collecting the same narcotic at several facilities within days, each time on a
    fresh prescription written there, so every single visit looks proper."""
    for _ in range(n):
        region = int(rng.integers(0, len(net.region_names)))
        facs_all = net.in_region(region, (HOSPITAL, HEALTH_CENTER, PHARMACY))
        k = int(min(len(facs_all), rng.integers(3, 5)))
        facs = rng.choice(facs_all, size=k, replace=False)
        d0 = int(rng.integers(GO_LIVE_DAYS + 2, max(GO_LIVE_DAYS + 3, tl.n_days - 20)))
        days = d0 + np.concatenate([[0], np.cumsum(rng.integers(1, 6, k - 1))])
        days = np.minimum(open_day(days, facs, net, tl), tl.n_days - 1)
        patient = int(_registered_alive(rng, pts, region, 1, tl.n_days)[0])
        item_code = NARCOTIC_ORAL[int(rng.integers(0, len(NARCOTIC_ORAL)))]
        item = ITEM_INDEX[item_code]
        q = ticks(item, float(rng.choice(TYPICAL[item_code])))
        rx_fac = np.array([_rx_facility(rng, net, int(f)) for f in facs])
        inc = plan.incident("doctor_shopping", int(facs[0]), card=patient, item=item, facilities=k)
        rx = plan.add_prescriptions(card=np.full(k, patient), fac=rx_fac, prescriber=pick_prescriber(rng, net, rx_fac),
                                    item=np.full(k, item), qty=np.full(k, q), days=np.full(k, 30),
                                    issued=days, diag=np.full(k, DIAGNOSIS[item_code], dtype=object))
        plan.events.append(events(k, t=days * DAY + _daytime(rng, net, facs), fac=facs, item=item, qty=q,
                                  card=patient, rx=rx, user=pick_user(rng, net, facs), inc=inc.number,
                                  strict=True))


def no_prescription_controlled(rng, plan: Plan, net: Network, pts: Patients, tl: Timeline, n: int) -> None:
    """A narcotic handed over the counter to a real patient with no prescription behind it."""
    facs = _weighted(rng, net, (HOSPITAL, HEALTH_CENTER, PHARMACY), n)
    for fac in facs.tolist():
        k = int(rng.integers(1, 3))
        d0 = int(rng.integers(GO_LIVE_DAYS + 1, tl.n_days - 8))
        days = np.minimum(open_day(d0 + np.sort(rng.integers(0, 8, k)), np.full(k, fac), net, tl), tl.n_days - 1)
        patient = int(_registered_alive(rng, pts, int(net.region[fac]), 1, tl.n_days)[0])
        item_code = NARCOTIC_ORAL[int(rng.integers(0, len(NARCOTIC_ORAL)))]
        item = ITEM_INDEX[item_code]
        qty = np.array([ticks(item, q) for q in rng.choice(TYPICAL[item_code], k)])
        inc = plan.incident("no_prescription_controlled", fac, card=patient, item=item)
        facs_k = np.full(k, fac)
        plan.events.append(events(k, t=days * DAY + _daytime(rng, net, facs_k), fac=fac, item=item, qty=qty,
                                  card=patient, user=pick_user(rng, net, facs_k), inc=inc.number, strict=True))


def off_hours_user(rng, plan: Plan, net: Network, pts: Patients, tl: Timeline, n: int) -> None:
    """One user of a health centre or pharmacy recording narcotic dispensings between 01:00 and 04:00,
    when the place is shut, against prescriptions written for real patients of the region."""
    facs = _weighted(rng, net, (HEALTH_CENTER, PHARMACY), n)
    for fac in facs.tolist():
        k = int(rng.integers(3, 7))
        days = np.sort(rng.choice(np.arange(GO_LIVE_DAYS + 1, tl.n_days), size=k, replace=False))
        sec = (1 * HOUR + rng.random(k) * 3 * HOUR).astype(np.int64)
        user = int(pick_user(rng, net, np.array([fac]))[0])
        patients = _registered_alive(rng, pts, int(net.region[fac]), k, tl.n_days)
        codes = [NARCOTIC_ORAL[i] for i in rng.integers(0, len(NARCOTIC_ORAL), k)]
        items = np.array([ITEM_INDEX[c] for c in codes])
        qty = np.array([ticks(ITEM_INDEX[c], float(rng.choice(TYPICAL[c]))) for c in codes])
        rx_fac = np.array([_rx_facility(rng, net, fac) for _ in range(k)])
        inc = plan.incident("off_hours_user", fac, user=user)
        rx = plan.add_prescriptions(card=patients, fac=rx_fac, prescriber=pick_prescriber(rng, net, rx_fac),
                                    item=items, qty=qty, days=np.full(k, 30), issued=days - 1,
                                    diag=np.array([DIAGNOSIS[c] for c in codes], dtype=object))
        plan.events.append(events(k, t=days * DAY + sec, fac=fac, item=items, qty=qty, card=patients, rx=rx,
                                  user=user, inc=inc.number, strict=True))


def consumption_spike(rng, plan: Plan, net: Network, pts: Patients, tl: Timeline, normal: Columns,
                      n: int) -> None:
    """A month in which a facility dispenses an item three to five times its usual volume, through
    many ordinary-looking dispensings on prescriptions that were written for the purpose."""
    if tl.n_months < 2:
        return
    month = tl.month_of_day[np.minimum(normal["t"] // DAY, tl.n_days - 1)]
    n_items = len(ITEMS)
    key = normal["fac"] * n_items + normal["item"]
    per_month = np.zeros((net.size * n_items, tl.n_months), np.int64)
    np.add.at(per_month, (key, month), 1)
    lo = 1 if tl.n_months >= 3 else 0
    candidates = []
    for m in range(max(lo + 1, 2) if tl.n_months >= 3 else 1, tl.n_months):
        base = per_month[:, lo:m].mean(axis=1)
        peak = per_month[:, lo:m].max(axis=1)
        ok = np.flatnonzero((base >= 4) & (peak <= 1.5 * base + 2) & (per_month[:, m] <= 1.5 * base + 2))
        candidates.extend((int(k), m, float(base[k])) for k in ok)
    if not candidates:
        return
    order = rng.permutation(len(candidates))
    used = set()
    for ci in order.tolist():
        if len(used) >= n:
            break
        k, m, base = candidates[ci]
        if k in used:
            continue
        used.add(k)
        fac, item = divmod(k, n_items)
        factor = float(rng.uniform(3.0, 5.0))
        extra = int(round((factor - 1) * base))
        lo_day = max(int(tl.month_start[m]), GO_LIVE_DAYS)
        days = rng.integers(lo_day, int(tl.month_start[m + 1]), extra)
        days = np.minimum(open_day(days, np.full(extra, fac), net, tl), tl.n_days - 1)
        mine = normal["qty"][(normal["fac"] == fac) & (normal["item"] == item)]
        qty = rng.choice(mine, size=extra)
        patients = _registered_alive(rng, pts, int(net.region[fac]), extra, tl.n_days)
        facs = np.full(extra, fac)
        inc = plan.incident("consumption_spike", fac, item=item, month=m, baseline=base, factor=factor)
        regimen = next(r for r in REGIMENS if ITEM_INDEX[r.item] == item)
        if regimen.prescribed:
            rx_fac = np.array([_rx_facility(rng, net, fac) for _ in range(extra)])
            rx = plan.add_prescriptions(card=patients, fac=rx_fac, prescriber=pick_prescriber(rng, net, rx_fac),
                                        item=np.full(extra, item), qty=qty, days=np.full(extra, regimen.days_supply),
                                        issued=days, diag=np.full(extra, regimen.diagnosis, dtype=object))
        else:
            rx = np.full(extra, -1)
        sec, night = clock(rng, net.kind[facs], net.night_share)
        plan.events.append(events(extra, t=days * DAY + sec, fac=fac, item=item, qty=qty, card=patients,
                                  rx=rx, user=pick_user(rng, net, facs, night), inc=inc.number, strict=True))


def stock_incidents(rng, plan: Plan, net: Network, tl: Timeline, n: int, n_cycles: int) -> None:
    """Plan the incidents the stock simulation resolves: silent count shortfalls, write-offs of
    stock far from expiry, and transfers that arrive short or not at all."""
    regional = net.regional_warehouse
    # Count shortfalls: mostly at dispensing facilities, now and then at a regional store.
    # Only months whose closing count comes after the first deliveries have anything to count.
    countable = [m for m in range(tl.n_months) if tl.month_start[m + 1] - 1 >= GO_LIVE_DAYS + 3]
    facs = _weighted(rng, net, (HOSPITAL, HEALTH_CENTER, PHARMACY), n)
    for fac in facs.tolist():
        if not countable:
            break
        if rng.random() < 0.2:
            fac = int(regional[rng.integers(0, len(regional))])
        k = int(rng.integers(0, len(countable)))
        for _ in range(len(countable)):
            if (fac, countable[k]) not in plan.count_shortfalls:
                break
            k = (k + 1) % len(countable)
        m = countable[k]
        if (fac, m) in plan.count_shortfalls:
            continue
        inc = plan.incident("count_shortfall", fac, month=m)
        plan.count_shortfalls[(fac, m)] = (inc.number, float(rng.uniform(0.3, 0.6)))
    # Write-offs of stock that is nowhere near its expiry.
    # They happen when shelves are full: a facility just after its monthly delivery (from the 24th),
    # a regional store between its own delivery and its dispatch to facilities (15th to 17th).
    facs = _weighted(rng, net, (HOSPITAL, HEALTH_CENTER, PHARMACY), n)
    for fac in facs.tolist():
        at_store = rng.random() < 0.3
        if at_store:
            fac = int(regional[rng.integers(0, len(regional))])
        first = tl.date_of(tl.month_start[int(rng.integers(0, tl.n_months))]).replace(day=1)
        dom = int(rng.integers(15, 18)) if at_store else int(rng.integers(24, 29))
        day = (first.replace(day=dom) - tl.start).days
        if not GO_LIVE_DAYS + 3 <= day < tl.n_days:
            day = int(rng.integers(GO_LIVE_DAYS + 3, tl.n_days))
        reason = R_EXPIRED if rng.random() < 0.5 else R_DAMAGED
        inc = plan.incident("premature_writeoff", fac)
        plan.events.append(events(1, t=day * DAY + 10 * HOUR + int(rng.integers(0, 4 * HOUR)), fac=fac, item=-1,
                                  qty=int(rng.integers(500, 900)), kind=WRITEOFF, reason=reason,
                                  user=pick_user(rng, net, np.array([fac])), inc=inc.number, strict=True))
    # Skimmed or vanished deliveries from a regional store to a facility.
    if n_cycles == 0:
        return
    facs = _weighted(rng, net, (HOSPITAL, HEALTH_CENTER, PHARMACY), n)
    for fac in facs.tolist():
        # A regular monthly delivery, not the last one (it is small: the period is ending).
        cycle = int(rng.integers(1, n_cycles - 1)) if n_cycles > 2 else 0
        while (fac, cycle) in plan.shrinkages:
            cycle = (cycle + 1) % n_cycles
        variant = "missing" if rng.random() < 0.4 else "short"
        inc = plan.incident("transfer_shrinkage", fac)
        plan.shrinkages[(fac, cycle)] = (inc.number, variant, float(rng.uniform(0.15, 0.45)))
