"""Legitimate behaviour at the dispensing counter, generated in bulk with numpy.

Each function takes this seed's ``Behaviours`` and either reshapes the ordinary demand (refills
collected early, patients who move, a clinic that opens mid-period, whole packs handed over) or
returns new events and the prescriptions behind them (operations at another hospital, regional
outbreaks, emergency doses, breakage). None of it carries an incident number.
"""

from __future__ import annotations

import numpy as np

from sample_data.catalog import ITEMS
from sample_data.demand import (ITEM_INDEX, REGIMENS, SPLIT_STEP, Patients, dispensings, pick_prescriber,
                                pick_user, ticks)
from sample_data.frames import (DAY, DISPENSE, GO_LIVE_DAYS, HOUR, KEYED_TEN, LOSS, R_DAMAGED, R_EMERGENCY,
                                Columns, Timeline, events)
from sample_data.legitimate.profile import Behaviours
from sample_data.network import HEALTH_CENTER, HOSPITAL, Network

WHOLE_PACK = {"PCM500T": 24, "IBU400T": 24, "AMX500C": 12, "AMX250S": 100, "INSG100": 3, "OME20C": 10,
              "MET500T": 20, "AML5T": 14, "LOS50T": 14, "ATV20T": 14, "LEV50T": 25, "DZP5T": 20}
"""The strip, box or bottle a counter hands over whole rather than cut (in the item's unit)."""
OUTBREAK_ITEMS = ("AMX500C", "AMX250S", "AZI500T", "PCM500T", "PCM120S", "IBU400T")
EMERGENCY = (("MOR10I", (1.0, 1.0, 1.5, 2.0)), ("DZP5T", (1.0, 2.0)))
"""Controlled doses an emergency department gives before any prescription is written."""
POSTOP_DIAGNOSIS = "Z48.8"


# ---------------------------------------------------------------- reshaping the chronic refills

def reshape_fills(rng: np.random.Generator, net: Network, pts: Patients, tl: Timeline, fills: Columns,
                  beh: Behaviours, keep_patients: set[int]) -> None:
    """Refills collected early, and patients who move to another facility (in place).

    ``keep_patients`` (those an incident is about) keep their usual facility.
    """
    n = len(fills)
    if n == 0:
        return
    # Early refills: before a journey or a holiday, a patient collects days ahead of time.
    same = np.zeros(n, bool)
    same[1:] = fills["treatment"][1:] == fills["treatment"][:-1]
    early = np.flatnonzero(same & (rng.random(n) < beh.early_refill_rate))
    shift = rng.integers(3, int(beh.early_refill_days) + 1, len(early))
    prev = fills["day"][early - 1]
    new_day = np.maximum(fills["day"][early] - shift, prev + 7)
    ok = new_day >= GO_LIVE_DAYS
    fills["day"][early[ok]] = new_day[ok]

    # Moves: from a day on, every refill is prescribed and collected at the new facility.
    patients = np.unique(fills["patient"])
    movers = patients[rng.random(len(patients)) < beh.move_rate]
    movers = np.array([p for p in movers.tolist() if p not in keep_patients], np.int64)
    if len(movers) == 0:
        return
    move_day = rng.integers(int(tl.n_days * 0.15), int(tl.n_days * 0.85) + 1, len(movers))
    far = rng.random(len(movers)) < 0.3
    n_regions = len(net.region_names)
    dest = np.empty(len(movers), np.int64)
    for k, p in enumerate(movers.tolist()):
        r = int(pts.region[p])
        if far[k] and n_regions > 1:
            r = int((r + 1 + rng.integers(0, n_regions - 1)) % n_regions)
        cand = net.in_region(r, (HOSPITAL, HEALTH_CENTER))
        cand = cand[cand != pts.home[p]]
        dest[k] = cand[rng.integers(0, len(cand))] if len(cand) else pts.home[p]
    where = {p: k for k, p in enumerate(movers.tolist())}
    idx = np.flatnonzero(np.isin(fills["patient"], movers))
    k = np.array([where[p] for p in fills["patient"][idx].tolist()], np.int64)
    after = fills["day"][idx] >= move_day[k]
    idx, k = idx[after], k[after]
    new = dest[k]
    # Treatments given only at hospitals (oncology, dialysis) move to the new region's medical
    # centre unless the new facility is a hospital itself.
    hospital_only = np.array([REGIMENS[g].setting.startswith("hospital") for g in fills["regimen"][idx].tolist()],
                             dtype=bool)
    new = np.where(hospital_only & (net.kind[new] != HOSPITAL), net.main_hospital[net.region[new]], new)
    fills["rx_fac"][idx] = new
    fills["disp"][idx] = new
    fills["prescriber"][idx] = pick_prescriber(rng, net, new)


# ---------------------------------------------------------------- on top of the ordinary demand

def whole_packs(rng: np.random.Generator, normal: Columns, rx_qty: np.ndarray, beh: Behaviours,
                keep: np.ndarray) -> int:
    """Complete fills handed over as whole strips or bottles, above the prescribed quantity."""
    unit = np.zeros(len(ITEMS), np.int64)
    for code, q in WHOLE_PACK.items():
        unit[ITEM_INDEX[code]] = ticks(ITEM_INDEX[code], q)
    if beh.profile == "shifted":
        unit *= 2
    ceiling = np.array([ticks(i, it.max_dispense) if it.max_dispense else 10**9 for i, it in enumerate(ITEMS)])
    item, qty, rx = normal["item"], normal["qty"], normal["rx"]
    u = unit[item]
    full = (rx >= 0) & (normal["inc"] < 0) & (qty == rx_qty[np.maximum(rx, 0)]) & (u > 0)
    rounded = np.where(u > 0, -(-qty // np.maximum(u, 1)) * u, qty)
    pick = full & (rounded > qty) & (rounded <= ceiling[item]) & (rng.random(len(qty)) < beh.whole_pack_rate) & ~keep
    normal["qty"][pick] = rounded[pick]
    return int(pick.sum())


def keyed_ten(rng: np.random.Generator, normal: Columns, beh: Behaviours, keep: np.ndarray) -> int:
    """Mark dispensings whose quantity will be keyed ten times too large (the stock simulation
    writes them, if the shelf allows, and their correction)."""
    pick = (normal["kind"] == DISPENSE) & (normal["inc"] < 0) & (rng.random(len(normal)) < beh.keyed_ten_rate)
    pick &= ~keep
    normal["kind"][pick] = KEYED_TEN
    return int(pick.sum())


def postop_courses(rng: np.random.Generator, net: Network, pts: Patients, tl: Timeline, fills: Columns,
                   beh: Behaviours, rx_first: int) -> tuple[Columns, Columns]:
    """Patients on a chronic treatment operated on at a hospital other than where they collect it:
    a short analgesic course (and often an anticoagulant) on discharge, overlapping the chronic
    prescription, written by the surgeon."""
    n = len(fills)
    pick = np.flatnonzero(rng.random(n) < beh.postop_rate)
    if len(pick) == 0:
        return None, None
    patient = fills["patient"][pick]
    ds = fills["days"][pick]
    day = fills["day"][pick] + 2 + np.floor(rng.random(len(pick)) * np.maximum(ds - 6, 1)).astype(np.int64)
    hosp = net.main_hospital[pts.region[patient]]
    same = hosp == fills["disp"][pick]
    for k in np.flatnonzero(same).tolist():
        cand = net.in_region(int(pts.region[patient[k]]), (HOSPITAL,))
        cand = cand[cand != fills["disp"][pick[k]]]
        hosp[k] = cand[rng.integers(0, len(cand))] if len(cand) else -1
    ok = (hosp >= 0) & (day < tl.n_days) & (day < pts.death_day[patient])
    patient, day, hosp, chronic_item = patient[ok], day[ok], hosp[ok], fills["item"][pick][ok]
    morphine = ITEM_INDEX["MOR10T"]
    analgesic = np.where(chronic_item == morphine, morphine, ITEM_INDEX["TRM50C"])
    qty = np.where(rng.random(len(day)) < 0.5, 20, 30)
    anticoag = rng.random(len(day)) < 0.5
    card = np.concatenate([patient, patient[anticoag]])
    item = np.concatenate([analgesic, np.full(anticoag.sum(), ITEM_INDEX["ENX40S"])])
    qty = np.concatenate([qty, np.full(anticoag.sum(), 10)])   # all three are counted in whole units
    day = np.concatenate([day, day[anticoag]])
    fac = np.concatenate([hosp, hosp[anticoag]])
    days = np.where(item == ITEM_INDEX["ENX40S"], 10, 7)
    m = len(card)
    return dispensings(rng, net, tl, card=card, day=day, fac=fac, rx_fac=fac,
                       prescriber=pick_prescriber(rng, net, fac), item=item, qty=qty, days=days,
                       diag=np.full(m, POSTOP_DIAGNOSIS, dtype=object), prescribed=np.ones(m, bool),
                       partial_rate=0.0, rx_first=rx_first, death_day=pts.death_day)


def outbreaks(rng: np.random.Generator, net: Network, pts: Patients, tl: Timeline, normal: Columns,
              rx_table: Columns, beh: Behaviours, rx_first: int) -> tuple[Columns, Columns, list[dict]]:
    """A few weeks in which one region sees far more respiratory infections than usual, at every
    facility at once, on real patients with real prescriptions."""
    n_regions = len(net.region_names)
    n = max(1, int(round(beh.outbreaks_per_region * n_regions)))
    items = np.array([ITEM_INDEX[c] for c in OUTBREAK_ITEMS])
    parts_ev, parts_rx, described = [], [], []
    day_of = normal["t"] // DAY
    child = pts.age < 12
    for _ in range(n):
        if tl.n_days < GO_LIVE_DAYS + 40:
            break
        r = int(rng.integers(0, n_regions))
        length = int(rng.integers(21, 43))
        d0 = int(rng.integers(GO_LIVE_DAYS + 7, tl.n_days - length))
        src = np.flatnonzero((net.region[normal["fac"]] == r) & np.isin(normal["item"], items)
                             & (day_of >= d0) & (day_of < d0 + length) & (normal["inc"] < 0)
                             & (normal["rx"] >= 0))
        extra = int(round(beh.outbreak_excess * len(src)))
        if extra == 0:
            continue
        src = rng.choice(src, size=extra)
        alive = (pts.region == r) & (pts.death_day > d0 + length)
        alive[pts.registered:] = False
        card = np.empty(extra, np.int64)
        for is_child in (True, False):
            pool = np.flatnonzero(alive & (child == is_child))
            sel = np.flatnonzero(child[normal["card"][src]] == is_child)
            if len(sel):
                card[sel] = pool[rng.integers(0, len(pool), len(sel))] if len(pool) else normal["card"][src[sel]]
        rx = normal["rx"][src]
        fac = normal["fac"][src]
        rx_fac = rx_table["fac"][rx]
        # Bell-shaped: most cases around the middle of the outbreak.
        day = d0 + np.clip(np.rint(rng.triangular(0, length / 2, length, extra)), 0, length - 1).astype(np.int64)
        e, p = dispensings(rng, net, tl, card=card, day=day, fac=fac, rx_fac=rx_fac,
                           prescriber=pick_prescriber(rng, net, rx_fac), item=normal["item"][src],
                           qty=normal["qty"][src], days=rx_table["days"][rx], diag=rx_table["diag"][rx],
                           prescribed=np.ones(extra, bool), partial_rate=0.0,
                           rx_first=rx_first, death_day=pts.death_day)
        rx_first += len(p)
        parts_ev.append(e)
        parts_rx.append(p)
        described.append({"region": r, "first_day": d0, "days": length, "extra": len(e)})
    if not parts_ev:
        return None, None, described
    return Columns.concat(parts_ev), Columns.concat(parts_rx), described


def emergency_doses(rng: np.random.Generator, net: Network, pts: Patients, tl: Timeline,
                    beh: Behaviours) -> Columns | None:
    """Controlled doses given in a hospital's emergency department without a prescription, with
    the reason written on the entry, day and night."""
    hospitals = np.flatnonzero(net.kind == HOSPITAL)
    rate = beh.emergency_per_hospital_month * net.weight[hospitals] / 5.0 * (tl.n_days - GO_LIVE_DAYS) / 30.4
    count = rng.poisson(rate)
    fac = np.repeat(hospitals, count)
    m = len(fac)
    if m == 0:
        return None
    day = rng.integers(GO_LIVE_DAYS, tl.n_days, m)
    sec = rng.integers(0, DAY, m)
    which = (rng.random(m) < 0.3).astype(np.int64)
    item = np.array([ITEM_INDEX[EMERGENCY[w][0]] for w in which.tolist()], np.int64)
    qty = np.array([ticks(i, float(rng.choice(EMERGENCY[w][1]))) for i, w in zip(item.tolist(), which.tolist())],
                   np.int64)
    card = np.empty(m, np.int64)
    n = pts.registered
    for r in np.unique(net.region[fac]).tolist():
        sel = np.flatnonzero(net.region[fac] == r)
        pool = np.flatnonzero((pts.region[:n] == r) & (pts.age[:n] >= 12))
        card[sel] = pool[rng.integers(0, len(pool), len(sel))]
        for _ in range(20):   # someone alive on the day
            dead = sel[pts.death_day[card[sel]] <= day[sel]]
            if len(dead) == 0:
                break
            card[dead] = pool[rng.integers(0, len(pool), len(dead))]
    ok = pts.death_day[card] > day
    fac, day, sec, item, qty, card = fac[ok], day[ok], sec[ok], item[ok], qty[ok], card[ok]
    m = len(fac)
    night = (sec < 8 * HOUR) | (sec >= 20 * HOUR)
    return events(m, t=day * DAY + sec, fac=fac, item=item, qty=qty, card=card,
                  user=pick_user(rng, net, fac, night), reason=R_EMERGENCY)


def breakage(rng: np.random.Generator, normal: Columns, beh: Behaviours) -> Columns:
    """More things dropped at the counter than the usual few per thousand."""
    n = len(normal)
    k = int(rng.binomial(n, min(beh.breakage_rate, 1.0))) if n else 0
    src = rng.choice(n, size=k, replace=False) if k else np.zeros(0, np.int64)
    items = normal["item"][src]
    dmg = np.array([ticks(i, ITEMS[i].damage_quantity) for i in items.tolist()], dtype=np.int64)
    dmg = np.maximum(dmg * (2 if beh.profile == "shifted" else 1), SPLIT_STEP[items])
    return events(k, t=normal["t"][src] + rng.integers(300, 2 * HOUR, k), fac=normal["fac"][src],
                  item=items, qty=dmg, kind=LOSS, user=normal["user"][src], reason=R_DAMAGED)


# ---------------------------------------------------------------- clinics opening mid-period

def choose_new_clinics(rng: np.random.Generator, net: Network, tl: Timeline, beh: Behaviours,
                       busy: set[int]) -> dict[int, tuple[int, int]]:
    """Health centres that open during the period: clinic -> (opening day, where its patients went
    before). ``busy`` facilities (where an incident happens) are left as they are."""
    out: dict[int, tuple[int, int]] = {}
    hcs = np.flatnonzero(net.kind == HEALTH_CENTER)
    n = max(1, int(round(beh.new_clinic_share * len(hcs))))
    for f in rng.permutation(hcs).tolist():
        if len(out) >= n:
            break
        if f in busy:
            continue
        others = net.in_region(int(net.region[f]), (HEALTH_CENTER, HOSPITAL))
        others = np.array([o for o in others.tolist() if o != f and o not in out], np.int64)
        if len(others) == 0:
            continue
        before = int(others[np.argmax(net.weight[others])])
        opening = int(rng.integers(int(tl.n_days * 0.25), int(tl.n_days * 0.65) + 1))
        out[f] = (max(opening, GO_LIVE_DAYS + 1), before)
    return out


def open_clinics(rng: np.random.Generator, net: Network, ev: Columns, rx_table: Columns,
                 clinics: dict[int, tuple[int, int]]) -> None:
    """Before a clinic opens, its patients are seen and served at the facility they used before."""
    for f, (opening, before) in clinics.items():
        e = np.flatnonzero((ev["fac"] == f) & (ev["t"] < opening * DAY) & (ev["inc"] < 0))
        ev["fac"][e] = before
        ev["user"][e] = pick_user(rng, net, np.full(len(e), before))
        r = np.flatnonzero((rx_table["fac"] == f) & (rx_table["issued"] < opening))
        rx_table["fac"][r] = before
        rx_table["prescriber"][r] = pick_prescriber(rng, net, np.full(len(r), before))
