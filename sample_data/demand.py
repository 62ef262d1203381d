"""Patients, prescriptions and the ordinary dispensings that make up most of the ledger.

Everything here is legitimate activity, generated in bulk with numpy so that a million dispensings
take seconds. It is deliberately full of the patterns that look like leakage to a naive rule but
are normal: monthly refills of chronic treatments, patients collecting at a public pharmacy instead
of their health centre, referrals to another facility after a prescription ran out, partial fills
completed days later, hospital pharmacies working through the night, and winter peaks of
respiratory infections across every facility at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sample_data.catalog import ACUTE_REGIMENS, CHRONIC_REGIMENS, DECIMAL_UNITS, ITEMS, Regimen
from sample_data.frames import (ADJUST, DAY, GO_LIVE_DAYS, HOUR, LOSS, R_CORRECTION, R_DAMAGED, REVERSAL,
                                Columns, Timeline, events, prescriptions)
from sample_data.network import HEALTH_CENTER, HOSPITAL, PHARMACY, Network

PATIENTS_PER_SCALE = 16_000
ALIVE = 10**6
FRIDAY = 4

ITEM_INDEX = {it.code: i for i, it in enumerate(ITEMS)}
TICKS = np.array([10 if it.unit in DECIMAL_UNITS else 1 for it in ITEMS], dtype=np.int64)
"""Internal quantities are whole ticks: tenths of a millilitre, whole units otherwise."""
SPLIT_STEP = np.where(TICKS > 1, 5, 1)
"""The smallest amount a dispensing is split or miscounted by (half a millilitre, one unit)."""
REGIMENS: tuple[Regimen, ...] = CHRONIC_REGIMENS + ACUTE_REGIMENS


def ticks(item: int, quantity: float) -> int:
    return int(round(quantity * TICKS[item]))


@dataclass
class Patients:
    cards: list[str]          # registered cards first, then invented ones (see ``add_unregistered``)
    registered: int
    birth_year: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    home: np.ndarray          # facility where registered (a hospital or health centre)
    region: np.ndarray
    pharmacy: np.ndarray      # usual public pharmacy in the region, -1 if none
    death_day: np.ndarray     # day of death relative to start; ALIVE if alive

    _spare: list[str] | None = None

    def add_unregistered(self, n: int) -> np.ndarray:
        """Card numbers that look real but are in no register: invented patients."""
        assert self._spare is not None and len(self._spare) >= n
        first = len(self.cards)
        self.cards.extend(self._spare[:n])
        self._spare = self._spare[n:]
        return np.arange(first, first + n)


def _card_numbers(rng: np.random.Generator, n: int) -> list[str]:
    values = np.unique(rng.integers(10**9, 10**10, size=int(n * 1.05) + 64))
    while len(values) < n:
        values = np.unique(np.concatenate([values, rng.integers(10**9, 10**10, size=n)]))
    values = rng.permutation(values)[:n]
    return [f"LY{v:010d}" for v in values.tolist()]


def build_patients(rng: np.random.Generator, net: Network, tl: Timeline, scale: float) -> Patients:
    n = max(300, round(PATIENTS_PER_SCALE * scale))
    spare = 400 + n // 50
    cards = _card_numbers(rng, n + spare)
    homes = np.flatnonzero(np.isin(net.kind, (HOSPITAL, HEALTH_CENTER)))
    w = net.weight[homes] * np.where(net.kind[homes] == HOSPITAL, 0.35, 1.0)
    home = rng.choice(homes, size=n, p=w / w.sum())
    region = net.region[home]
    pharmacy = np.full(n, -1, np.int64)
    for r in range(len(net.region_names)):
        ph = net.in_region(r, (PHARMACY,))
        sel = np.flatnonzero(region == r)
        if len(ph) and len(sel):
            pw = net.weight[ph]
            pharmacy[sel] = rng.choice(ph, size=len(sel), p=pw / pw.sum())
    age = np.minimum(95, np.floor(rng.gamma(2.2, 14.0, n))).astype(np.int64)
    birth_year = tl.start.year - age
    sex = rng.choice(np.array(["F", "M", "U"], dtype=object), size=n, p=[0.49, 0.49, 0.02])
    death = np.full(n, ALIVE, np.int64)
    before = rng.random(n) < 0.008
    death[before] = -rng.integers(1, 400, before.sum())
    p_window = (0.004 + 0.03 * (age >= 65)) * tl.n_days / 181
    during = ~before & (rng.random(n) < p_window) & (tl.n_days > 20)
    death[during] = rng.integers(10, max(tl.n_days, 11), during.sum())
    return Patients(cards=cards[:n], registered=n, birth_year=birth_year, age=age, sex=sex, home=home,
                    region=region, pharmacy=pharmacy, death_day=death, _spare=cards[n:])


# ---------------------------------------------------------------- shared building blocks

def open_day(day: np.ndarray, fac: np.ndarray, net: Network, tl: Timeline) -> np.ndarray:
    """Health centres close on Friday (the Libyan weekend), many on Saturday too: their patients
    come on the next open day (the last open day before, at the end of the period)."""
    if net.closed is not None:
        return _next_open(np.asarray(day).copy(), np.asarray(fac), net, tl)
    day = np.asarray(day).copy()
    inside = (day >= 0) & (day < tl.n_days)
    fri = inside.copy()
    fri[inside] = tl.weekday[day[inside]] == FRIDAY
    fri &= net.kind[fac] == HEALTH_CENTER
    day[fri] = np.where(day[fri] + 1 < tl.n_days, day[fri] + 1, day[fri] - 1)
    return day


def _closed(day: np.ndarray, fac: np.ndarray, net: Network, tl: Timeline) -> np.ndarray:
    inside = (day >= 0) & (day < tl.n_days)
    out = np.zeros(len(day), bool)
    out[inside] = net.closed[fac[inside], tl.weekday[day[inside]]]
    return out


def _next_open(day: np.ndarray, fac: np.ndarray, net: Network, tl: Timeline) -> np.ndarray:
    start = day.copy()
    for _ in range(6):
        shut = _closed(day, fac, net, tl)
        if not shut.any():
            break
        day[shut] += 1
    late = day >= tl.n_days
    if late.any():
        day[late] = np.minimum(start[late], tl.n_days - 1)
        day[late] = last_open(day[late], fac[late], net, tl)
    return day


def last_open(day: np.ndarray, fac: np.ndarray, net: Network, tl: Timeline) -> np.ndarray:
    """The day itself if ``fac`` is open then, else the last open day before it."""
    day = np.asarray(day).copy()
    if net.closed is None:
        fri = np.zeros(len(day), bool)
        inside = (day >= 0) & (day < tl.n_days)
        fri[inside] = tl.weekday[day[inside]] == FRIDAY
        return np.where(fri & (net.kind[fac] == HEALTH_CENTER), day - 1, day)
    for _ in range(6):
        shut = _closed(day, np.asarray(fac), net, tl)
        if not shut.any():
            break
        day[shut] -= 1
    return day


def clock(rng: np.random.Generator, kind: np.ndarray,
          night_share: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Second of the day of a dispensing by facility kind, and whether it fell on the night shift.

    Health centres work mornings, public pharmacies until evening, hospital pharmacies around the
    clock with ``night_share`` (a quarter, unless the country says otherwise) of their work at night.
    """
    n = len(kind)
    sec = np.empty(n, np.int64)
    night = np.zeros(n, bool)
    hc, ph, ho = kind == HEALTH_CENTER, kind == PHARMACY, kind == HOSPITAL
    sec[hc] = 8 * HOUR + rng.beta(2.0, 2.5, hc.sum()) * 7 * HOUR
    sec[ph] = 9 * HOUR + rng.beta(1.3, 1.3, ph.sum()) * 12 * HOUR
    nh = ho.sum()
    is_night = rng.random(nh) < night_share
    day_sec = 8 * HOUR + rng.beta(1.8, 2.2, nh) * 12 * HOUR
    night_sec = (20 * HOUR + rng.random(nh) * 12 * HOUR) % DAY
    sec[ho] = np.where(is_night, night_sec, day_sec)
    night[ho] = is_night
    return np.minimum(sec, DAY - 1), night


def pick_user(rng: np.random.Generator, net: Network, fac: np.ndarray, night: np.ndarray | None = None) -> np.ndarray:
    """A staff member of ``fac``; hospital night work goes to the night-shift staff."""
    n = net.user_count[fac]
    n_night = net.night_users[fac]
    u = rng.random(len(fac))
    if night is None:
        night = np.zeros(len(fac), bool)
    day_pick = net.user_offset[fac] + np.floor(u * (n - n_night)).astype(np.int64)
    night_pick = net.user_offset[fac] + (n - n_night) + np.floor(u * np.maximum(n_night, 1)).astype(np.int64)
    return np.where(night & (n_night > 0), night_pick, day_pick)


def pick_prescriber(rng: np.random.Generator, net: Network, fac: np.ndarray) -> np.ndarray:
    return net.prescriber_offset[fac] + np.floor(rng.random(len(fac)) * net.prescriber_count[fac]).astype(np.int64)


def align(q: np.ndarray, item: np.ndarray) -> np.ndarray:
    step = SPLIT_STEP[item]
    return np.maximum(step, (q // step) * step)


def dispensings(rng: np.random.Generator, net: Network, tl: Timeline, *, card, day, fac, rx_fac,
                prescriber, item, qty, days, diag, prescribed, partial_rate: float,
                rx_first: int, death_day: np.ndarray) -> tuple[Columns, Columns]:
    """Dispense events (and the prescriptions they fill) for a batch of treatment episodes.

    Prescriptions are issued on the day of collection or up to three days earlier. A share of them
    is filled in two parts a few days apart, as happens when the shelf is short. Nothing is
    collected on or after the day the patient dies (``death_day`` is indexed by card).
    """
    day = open_day(day, fac, net, tl)
    keep = (day >= GO_LIVE_DAYS) & (day < tl.n_days) & (day < death_day[card])
    card, day, fac, rx_fac, prescriber, item, qty, days, diag, prescribed = (
        a[keep] for a in (card, day, fac, rx_fac, prescriber, item, qty, days, diag, prescribed))
    n = len(day)
    sec, night = clock(rng, net.kind[fac], net.night_share)
    user = pick_user(rng, net, fac, night)

    lag = np.where(rng.random(n) < 0.7, 0, rng.integers(1, 4, n))
    issued = last_open(day - lag, rx_fac, net, tl)
    rx = np.full(n, -1, np.int64)
    rx[prescribed] = rx_first + np.arange(prescribed.sum())
    rx_table = prescriptions(int(prescribed.sum()), card=card[prescribed], fac=rx_fac[prescribed],
                             prescriber=prescriber[prescribed], item=item[prescribed], qty=qty[prescribed],
                             days=days[prescribed], issued=issued[prescribed], diag=diag[prescribed])

    split = prescribed & (rng.random(n) < partial_rate) & (qty >= 2 * SPLIT_STEP[item])
    first_part = np.minimum(align(np.floor(qty * rng.uniform(0.4, 0.7, n)).astype(np.int64), item),
                            qty - SPLIT_STEP[item])
    qty1 = np.where(split, first_part, qty)
    main = events(n, t=day * DAY + sec, fac=fac, item=item, qty=qty1, card=card, rx=rx, user=user)

    s = np.flatnonzero(split)
    later = open_day(day[s] + rng.integers(2, 8, len(s)), fac[s], net, tl)
    ok = (later < tl.n_days) & (later < death_day[card[s]])
    s, later = s[ok], later[ok]
    sec2, night2 = clock(rng, net.kind[fac[s]], net.night_share)
    rest = events(len(s), t=later * DAY + sec2, fac=fac[s], item=item[s], qty=qty[s] - qty1[s],
                  card=card[s], rx=rx[s], user=pick_user(rng, net, fac[s], night2))
    return Columns.concat([main, rest]), rx_table


# ---------------------------------------------------------------- chronic treatment

def _choose_quantity(rng: np.random.Generator, regimen: np.ndarray) -> np.ndarray:
    """A quantity from the regimen's usual options, in ticks."""
    out = np.empty(len(regimen), np.int64)
    for g in np.unique(regimen):
        sel = np.flatnonzero(regimen == g)
        reg = REGIMENS[g]
        item = ITEM_INDEX[reg.item]
        opts = np.array([ticks(item, q) for q in reg.quantities])
        out[sel] = opts[rng.integers(0, len(opts), len(sel))]
    return out


def _sites(rng, net: Network, pts: Patients, patient: np.ndarray, regimen: np.ndarray,
           pharmacy_share: float):
    """Where a treatment is prescribed and where it is usually collected."""
    setting = np.array([REGIMENS[g].setting for g in regimen], dtype=object) if len(regimen) else np.array([], object)
    home = pts.home[patient]
    main_h = net.main_hospital[pts.region[patient]]
    hospital_based = np.isin(setting, ("hospital", "hospital-procedure"))
    at_hospital = np.where(net.kind[home] == HOSPITAL, home, main_h)
    rx_fac = np.where(hospital_based, at_hospital, home)
    pharm = pts.pharmacy[patient]
    to_pharmacy = (setting == "any") & (pharm >= 0) & (rng.random(len(patient)) < pharmacy_share)
    disp = np.where(to_pharmacy, pharm, rx_fac)
    # The other counter a patient sometimes uses: the pharmacy instead of home, or the reverse.
    alt = np.where(setting == "any", np.where(to_pharmacy, rx_fac, np.where(pharm >= 0, pharm, rx_fac)), disp)
    return rx_fac, disp, alt


def chronic_treatments(rng: np.random.Generator, net: Network, pts: Patients) -> Columns:
    """Which patients live with which long-term treatment, with their dose and usual counter."""
    n = pts.registered
    age = pts.age
    p = np.select([age < 15, age < 40, age < 60], [0.03, 0.12, 0.40], 0.65)
    has = rng.random(n) < p
    counts = np.where(has, 1 + rng.binomial(2, 0.35, n), 0)
    patient = np.repeat(np.arange(n), counts)
    adult = pts.age[patient] >= 18
    regimen = np.empty(len(patient), np.int64)
    for is_adult in (True, False):
        sel = np.flatnonzero(adult == is_adult)
        allowed = [g for g, r in enumerate(CHRONIC_REGIMENS) if is_adult or r.ages == "any"]
        w = np.array([CHRONIC_REGIMENS[g].weight for g in allowed])
        regimen[sel] = np.array(allowed)[rng.choice(len(allowed), size=len(sel), p=w / w.sum())]
    item = np.array([ITEM_INDEX[REGIMENS[g].item] for g in regimen], dtype=np.int64)
    _, first = np.unique(patient * len(ITEMS) + item, return_index=True)
    first.sort()
    patient, regimen, item = patient[first], regimen[first], item[first]
    rx_fac, disp, alt = _sites(rng, net, pts, patient, regimen, 0.4)
    return Columns(patient=patient, regimen=regimen, item=item, qty=_choose_quantity(rng, regimen),
                   days=np.array([REGIMENS[g].days_supply for g in regimen], dtype=np.int64),
                   rx_fac=rx_fac, disp=disp, alt=alt, prescriber=pick_prescriber(rng, net, rx_fac))


def chronic_fills(rng: np.random.Generator, net: Network, pts: Patients, tl: Timeline,
                  tr: Columns) -> Columns:
    """The monthly collections of each chronic treatment, each on a new prescription.

    Refill intervals wobble around the days supply (patients come a few days early or late), some
    months are missed, and a few collections are referrals: the patient is seen at another
    facility of the region after the previous supply ran out, and later refills shift with it.
    """
    m = len(tr)
    ds = tr["days"]
    d0 = GO_LIVE_DAYS + np.floor(rng.random(m) * ds).astype(np.int64)
    width = int(math.ceil((tl.n_days - GO_LIVE_DAYS) / max(int(ds.min()) - 4, 1))) + 2
    jitter = np.clip(np.rint(rng.normal(0, 1.8, (m, width))), -4, 5).astype(np.int64)
    step = ds[:, None] + jitter
    step[:, 0] = 0
    referral = rng.random((m, width)) < 0.03
    referral[:, 0] = False
    # Late enough that the previous supply has run out even after an early-refill wobble.
    shift = np.where(referral, rng.integers(5, 9, (m, width)), 0)
    day = d0[:, None] + np.cumsum(step + shift, axis=1)
    death = pts.death_day[tr["patient"]]
    valid = (day < tl.n_days) & (day < death[:, None]) & (rng.random((m, width)) > 0.05)
    row, col = np.nonzero(valid)
    referral = referral[row, col]
    day = day[row, col]
    patient = tr["patient"][row]
    usual = np.where(rng.random(len(row)) < 0.9, tr["disp"][row], tr["alt"][row])
    rx_fac = tr["rx_fac"][row].copy()
    prescriber = tr["prescriber"][row].copy()
    disp = usual.copy()
    # A referral is seen and served at another health centre or hospital of the same region.
    ref_idx = np.flatnonzero(referral)
    for r in range(len(net.region_names)):
        cand = net.in_region(r, (HOSPITAL, HEALTH_CENTER))
        sel = ref_idx[pts.region[patient[ref_idx]] == r]
        if len(sel) == 0 or len(cand) < 2:
            continue
        pick = cand[rng.integers(0, len(cand), len(sel))]
        same = pick == rx_fac[sel]
        pick[same] = cand[(np.searchsorted(cand, pick[same]) + 1) % len(cand)]
        rx_fac[sel] = pick
        disp[sel] = pick
        prescriber[sel] = pick_prescriber(rng, net, pick)
    return Columns(treatment=row, patient=patient, day=day, disp=disp, rx_fac=rx_fac,
                   prescriber=prescriber, item=tr["item"][row], qty=tr["qty"][row], days=tr["days"][row],
                   regimen=tr["regimen"][row])


# ---------------------------------------------------------------- acute episodes

def acute_episodes(rng: np.random.Generator, net: Network, pts: Patients, tl: Timeline) -> Columns:
    """Short illnesses and procedures: one prescription (or none, for consumables) each.

    Respiratory regimens follow a winter curve peaking in mid-January, the same everywhere, so a
    regional peak is not by itself a sign of anything.
    """
    n = pts.registered
    age = pts.age
    rate = np.select([age < 12, age < 60], [1.3, 0.75], 1.05) * tl.n_days / 181
    alive = pts.death_day > GO_LIVE_DAYS
    count = np.where(alive, rng.poisson(rate), 0)
    patient = np.repeat(np.arange(n), count)
    child = pts.age[patient] < 12
    regimen = np.empty(len(patient), np.int64)
    base = len(CHRONIC_REGIMENS)
    for is_child in (True, False):
        sel = np.flatnonzero(child == is_child)
        allowed = [g for g, r in enumerate(ACUTE_REGIMENS)
                   if r.ages == "any" or (r.ages == "child") == is_child]
        w = np.array([ACUTE_REGIMENS[g].weight for g in allowed])
        regimen[sel] = base + np.array(allowed)[rng.choice(len(allowed), size=len(sel), p=w / w.sum())]
    days = np.arange(GO_LIVE_DAYS, tl.n_days)
    day = np.empty(len(patient), np.int64)
    for g in np.unique(regimen):
        sel = np.flatnonzero(regimen == g)
        amp = REGIMENS[g].seasonal
        w = 1 + amp * np.cos(2 * np.pi * (tl.day_of_year[days] - 15) / 365.25)
        day[sel] = rng.choice(days, size=len(sel), p=w / w.sum())
    keep = day < pts.death_day[patient]
    patient, regimen, day = patient[keep], regimen[keep], day[keep]
    rx_fac, disp, _ = _sites(rng, net, pts, patient, regimen, 0.35)
    item = np.array([ITEM_INDEX[REGIMENS[g].item] for g in regimen], dtype=np.int64)
    return Columns(patient=patient, day=day, disp=disp, rx_fac=rx_fac,
                   prescriber=pick_prescriber(rng, net, rx_fac), item=item,
                   qty=_choose_quantity(rng, regimen),
                   days=np.array([REGIMENS[g].days_supply for g in regimen], dtype=np.int64),
                   regimen=regimen)


def episodes_to_events(rng, net, tl, ep: Columns, *, partial_rate: float, rx_first: int,
                       death_day: np.ndarray):
    """Turn treatment episodes (chronic fills or acute episodes) into events and prescriptions."""
    prescribed = np.array([REGIMENS[g].prescribed for g in ep["regimen"]], dtype=bool) if len(ep) else np.zeros(0, bool)
    diag = np.array([REGIMENS[g].diagnosis for g in ep["regimen"]], dtype=object) if len(ep) else np.zeros(0, object)
    return dispensings(rng, net, tl, card=ep["patient"], day=ep["day"], fac=ep["disp"],
                       rx_fac=ep["rx_fac"], prescriber=ep["prescriber"], item=ep["item"],
                       qty=ep["qty"], days=ep["days"], diag=diag, prescribed=prescribed,
                       partial_rate=partial_rate, rx_first=rx_first, death_day=death_day)


def legitimate_extras(rng: np.random.Generator, net: Network, tl: Timeline,
                      disp: Columns) -> tuple[Columns, Columns, Columns]:
    """Breakages, small corrections and dispensings entered twice then reversed.

    These are the honest counterparts of write-offs and over-dispensing: a pharmacist drops a
    bottle, corrects a miskeyed quantity, or records a dispensing twice and reverses the copy with a
    ``correction`` adjustment that names it in ``reverses``.
    """
    n = len(disp)
    parts = []
    # Breakage near a dispensing counter, a few per thousand dispensings.
    k = int(n * 0.003)
    src = rng.choice(n, size=k, replace=False) if k else np.zeros(0, np.int64)
    items = disp["item"][src]
    dmg = np.array([ticks(i, ITEMS[i].damage_quantity) for i in items], dtype=np.int64)
    parts.append(events(k, t=disp["t"][src] + rng.integers(300, 2 * HOUR, k), fac=disp["fac"][src],
                        item=items, qty=dmg, kind=LOSS, user=disp["user"][src], reason=R_DAMAGED))
    # Small keyed corrections.
    k = int(n * 0.0006)
    src = rng.choice(n, size=k, replace=False) if k else np.zeros(0, np.int64)
    sign = np.where(rng.random(k) < 0.6, 1, -1)
    items = disp["item"][src]
    parts.append(events(k, t=disp["t"][src] + rng.integers(600, 3 * HOUR, k), fac=disp["fac"][src],
                        item=items, qty=sign * SPLIT_STEP[items] * rng.integers(1, 3, k), kind=ADJUST,
                        user=disp["user"][src], reason=R_CORRECTION))
    # Duplicate entry reversed within the hour.
    k = max(1, int(n * 0.0008)) if n else 0
    src = rng.choice(np.flatnonzero(disp["rx"] >= 0), size=k, replace=False) if k else np.zeros(0, np.int64)
    dup = disp.take(src)
    dup["t"] = dup["t"] + rng.integers(60, 900, k)
    rev = events(k, t=dup["t"] + rng.integers(600, 3600, k), fac=dup["fac"], item=dup["item"],
                 qty=dup["qty"], kind=REVERSAL, user=dup["user"], reason=R_CORRECTION)
    return Columns.concat(parts), dup, rev   # the caller points each reversal at its duplicate
