"""The stock simulation: lots, replenishment and every ledger row that depends on what is on the shelf.

A strict importer refuses any movement that takes a lot below zero, so the generator cannot just
scatter rows: it replays the whole period in time order with a balance per (facility, item, lot),
exactly as the importer will, and only moves what is there. Dispensings take the first-expiring lot
(splitting across lots when one runs out), warehouses do not ship stock within a month of expiry,
lots that reach expiry on a shelf are written off the evening before, and every month ends with a
count of each lot held.

Replenishment is a monthly order-up-to cycle: the central warehouse receives new lots from
suppliers, ships to the regional stores, which ship to their facilities. Orders are sized from the
demand the facilities will actually see (a well-run forecast with a safety margin), so stock-outs
are rare but do occur where leakage has emptied a shelf.

Rows are emitted in the order they are applied, which is also non-decreasing ``occurred_at``; ties
keep that order, which is the contract's rule for applying rows with equal times.
"""

from __future__ import annotations

import bisect
from array import array
import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from sample_data.catalog import ITEMS
from sample_data.demand import SPLIT_STEP, TICKS
from sample_data.frames import (ADJUST, DAY, DISPENSE, DISPENSE_KINDS, GO_LIVE_DAYS, HOUR, LOSS, R_DAMAGED,
                                R_EXPIRED, REVERSAL, WRITEOFF, Columns, Timeline)
from sample_data.network import WAREHOUSE, Network

# Ledger row kinds, in the contract's words.
KINDS = ("receipt", "dispense", "transfer_out", "transfer_in", "adjustment", "loss", "count")
K_RECEIPT, K_DISPENSE, K_OUT, K_IN, K_ADJUST, K_LOSS, K_COUNT = range(7)
NEVER = 10**7
"""Expiry day of an untracked lot: it sorts last and never expires."""
SHIP_MIN_SHELF = 30
"""Warehouses do not send out stock with less than this many days to expiry."""


@dataclass
class Cycle:
    receipt: int
    central_ship: int
    facility_ship: int
    receipt_sec: int
    central_sec: int
    facility_sec: int
    central_lag: tuple[int, int]
    facility_lag: tuple[int, int]
    horizon: int = 0


def supply_cycles(tl: Timeline) -> list[Cycle]:
    """Go-live stocking, then one cycle a month: receipts on the 8th, regional deliveries from the
    10th, facility deliveries from the 18th, each arriving one to five days after dispatch."""
    cycles = [Cycle(0, 0, 3, 8 * HOUR, 13 * HOUR, 9 * HOUR, (1, 2), (1, 3))]
    for m in range(tl.n_months):
        first = tl.date_of(tl.month_start[m]).replace(day=1)
        r = (first.replace(day=8) - tl.start).days
        if r < GO_LIVE_DAYS or r + 10 + 6 > tl.n_days:
            continue
        cycles.append(Cycle(r, r + 2, r + 10, 9 * HOUR, 10 * HOUR, 8 * HOUR, (1, 5), (1, 5)))
    for k, c in enumerate(cycles):
        nxt = cycles[k + 1].facility_ship if k + 1 < len(cycles) else None
        c.horizon = (nxt - c.facility_ship + 8) if nxt is not None else (tl.n_days - c.facility_ship + 1)
    return cycles


@dataclass
class Lots:
    item: list[int] = field(default_factory=list)
    number: list[str] = field(default_factory=list)
    expiry: list[int] = field(default_factory=list)       # day relative to start; NEVER if untracked
    tracked: list[bool] = field(default_factory=list)

    def add(self, item: int, number: str, expiry: int, tracked: bool) -> int:
        self.item.append(item)
        self.number.append(number)
        self.expiry.append(expiry)
        self.tracked.append(tracked)
        return len(self.item) - 1


@dataclass
class SimResult:
    n_rows: int
    static_seq: np.ndarray
    static_ev: np.ndarray
    static_lot: np.ndarray
    static_qty: np.ndarray
    static_item: dict[int, int]                 # seq -> item, for write-offs whose item the simulation chose
    static_fac: dict[int, int]                  # seq -> facility, for write-offs moved to the supplying store
    gen: dict[str, np.ndarray]
    gen_doc: list[str]
    reverses: dict[int, int]                    # seq of a correction -> seq it reverses
    evidence: dict[int, int]                    # seq of a generated row -> incident number
    incident_info: dict[int, dict]
    lots: Lots
    failed_strict: int
    short_fills: int
    skipped: int


class _Uniform:
    """Pre-drawn uniforms: a draw per generated row without a numpy call each time."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.buf: list[float] = []
        self.i = 0

    def __call__(self) -> float:
        if self.i >= len(self.buf):
            self.buf = self.rng.random(65_536).tolist()
            self.i = 0
        self.i += 1
        return self.buf[self.i - 1]


def _np(values: array) -> np.ndarray:
    return np.frombuffer(values, dtype=np.int64).copy() if len(values) else np.zeros(0, np.int64)


def simulate(rng: np.random.Generator, net: Network, tl: Timeline, ev: Columns, *,
             count_shortfalls: dict, shrinkages: dict, short_dated: set[int]) -> SimResult:
    """Replay the static events ``ev`` (sorted by time) against simulated stock; see the module.

    A subclass adds behaviour through the hooks (``miscount``, ``dispatched``, ``other_event``,
    and the calendar's own methods); see ``sample_data.legitimate.shelves``.
    """
    return StockSimulation(rng, net, tl, ev, count_shortfalls=count_shortfalls, shrinkages=shrinkages,
                           short_dated=short_dated).run()


class StockSimulation:
    """Shelves, the supply calendar and the rows they produce.

    Stock is kept per key ``facility * n_items + item`` as a list of ``[expiry, lot, qty]`` sorted
    first-expiry-first. Rows the simulation makes up itself (receipts, transfers, counts, expiry
    write-offs) go to ``gen``; rows that carry out a static event are recorded by event number in
    ``run``. Both share one row counter, which is the application (and file) order.
    """

    def __init__(self, rng: np.random.Generator, net: Network, tl: Timeline, ev: Columns, *,
                 count_shortfalls: dict, shrinkages: dict, short_dated: set[int]):
        self.net, self.tl, self.ev = net, tl, ev
        self.count_shortfalls, self.shrinkages, self.short_dated = count_shortfalls, dict(shrinkages), short_dated
        self.n_items = len(ITEMS)
        self.uni = _Uniform(rng)
        self.nxt = itertools.count().__next__
        self.nxt_sched = itertools.count().__next__
        self.pack = [int(round(it.pack * TICKS[i])) for i, it in enumerate(ITEMS)]
        self.case = [10 * p for p in self.pack]
        self.step = SPLIT_STEP.tolist()
        self.cycles = supply_cycles(tl)
        self.members = {int(w): np.flatnonzero(net.parent == w) for w in net.regional_warehouse}
        self._forecast()

        self.hold: dict[int, list[list[int]]] = {}
        self.transit: dict[int, int] = {}
        self.fac_keys: dict[int, set[int]] = {f: set() for f in range(net.size)}
        self.holders: dict[int, list[int]] = {}        # lot -> keys that received it
        self.lots = Lots()
        self.untracked_lot = {i: self.lots.add(i, "", NEVER, False)
                              for i, it in enumerate(ITEMS) if not it.lot_tracked}
        self.heap: list = []
        self.g = {k: array("q") for k in ("seq", "t", "kind", "fac", "item", "lot", "qty", "cp", "reason",
                                           "user", "exp", "card", "rx")}
        self.g_doc: list[str] = []
        self.evidence: dict[int, int] = {}
        self.info: dict[int, dict] = {}
        self.reverses: dict[int, int] = {}
        self.counters = {"doc": 0, "grn": 0, "lot": 0}
        self.failed_strict = self.short_fills = self.skipped = 0
        self.damaged_arrival_rate = 0.01
        # Rows that carry out static events: (row, event, lot, quantity); see ``record``.
        self.s_seq, self.s_ev, self.s_lot, self.s_qty = array("q"), array("q"), array("q"), array("q")

    def _forecast(self) -> None:
        """Cumulative requested quantity per facility, item and day: what orders are sized from."""
        ev, n_items = self.ev, self.n_items
        self.span = span = self.tl.n_days + 80
        disp = np.isin(ev["kind"], DISPENSE_KINDS)
        day = np.minimum(ev["t"][disp] // DAY, span - 1)
        flat = (ev["fac"][disp] * n_items + ev["item"][disp]) * span + day
        demand = np.bincount(flat, weights=ev["qty"][disp], minlength=self.net.size * n_items * span)
        self.cum = np.zeros((self.net.size, n_items, span + 1), np.int64)
        np.cumsum(demand.reshape(self.net.size, n_items, span).astype(np.int64), axis=2, out=self.cum[:, :, 1:])
        self.typical = np.zeros(n_items)
        for i in range(n_items):
            q = ev["qty"][disp & (ev["item"] == i)]
            self.typical[i] = float(np.median(q)) if len(q) else self.pack[i]

    # ---------------------------------------------------------------- rows
    def emit(self, t, kind, fac, item, lot, qty, cp=-1, reason=0, user=-1, exp=False, doc="", inc=-1,
             card=-1, rx=-1) -> int:
        seq = self.nxt()
        g = self.g
        g["seq"].append(seq)
        g["t"].append(t)
        g["kind"].append(kind)
        g["fac"].append(fac)
        g["item"].append(item)
        g["lot"].append(lot)
        g["qty"].append(qty)
        g["cp"].append(cp)
        g["reason"].append(reason)
        g["user"].append(user if user >= 0 else self.staff(fac))
        g["exp"].append(exp)
        g["card"].append(card)
        g["rx"].append(rx)
        self.g_doc.append(doc)
        if inc >= 0:
            self.evidence[seq] = inc
        return seq

    def staff(self, fac: int) -> int:
        """A day-shift user of ``fac``."""
        n = int(self.net.user_count[fac] - self.net.night_users[fac])
        return int(self.net.user_offset[fac]) + int(self.uni() * n)

    # ---------------------------------------------------------------- shelves
    def put(self, key: int, lot: int, qty: int) -> None:
        lots_here = self.hold.get(key)
        if lots_here is None:
            lots_here = self.hold[key] = []
            self.fac_keys[key // self.n_items].add(key)
        for entry in lots_here:
            if entry[1] == lot:
                entry[2] += qty
                return
        bisect.insort(lots_here, [self.lots.expiry[lot], lot, qty])
        if self.lots.tracked[lot]:
            self.holders.setdefault(lot, []).append(key)

    def stock(self, key: int, min_expiry: int = -NEVER) -> int:
        """On hand, counting only lots that expire on or after ``min_expiry``."""
        return sum(e[2] for e in self.hold.get(key, ()) if e[0] >= min_expiry)

    def take_fefo(self, key: int, qty: int, min_expiry: int) -> list[tuple[int, int]]:
        """Remove up to ``qty`` from the first-expiring lots that expire on or after ``min_expiry``."""
        out = []
        lots_here = self.hold.get(key)
        if not lots_here:
            return out
        for entry in list(lots_here):
            if qty <= 0:
                break
            if entry[0] < min_expiry:
                continue
            q = min(qty, entry[2])
            entry[2] -= q
            qty -= q
            out.append((entry[1], q))
            if entry[2] == 0:
                lots_here.remove(entry)
        return out

    def take_lot(self, key: int, lot: int, qty: int) -> int:
        """Remove up to ``qty`` of one lot; returns what was there to take."""
        for entry in self.hold.get(key, ()):
            if entry[1] == lot:
                q = min(qty, entry[2])
                entry[2] -= q
                if entry[2] == 0:
                    self.hold[key].remove(entry)
                return q
        return 0

    # ---------------------------------------------------------------- the supply calendar
    def schedule(self, t: int, fn, *args) -> None:
        heapq.heappush(self.heap, (t, self.nxt_sched(), fn, args))

    def plan_calendar(self) -> None:
        """Receipts, deliveries and month-end counts, each a timed piece of work."""
        net, tl = self.net, self.tl
        for k, c in enumerate(self.cycles):
            self.schedule(c.receipt * DAY + c.receipt_sec, self.receipt, k)
            for j, w in enumerate(net.regional_warehouse.tolist()):
                t = c.central_ship * DAY + c.central_sec + j * 10 * 60
                self.schedule(t, self.central_ship, k, w, t)
                for jj, f in enumerate(self.members[w].tolist()):
                    tf = c.facility_ship * DAY + c.facility_sec + jj * 3 * 60
                    self.schedule(tf, self.facility_ship, k, w, f, tf)
        for m in range(tl.n_months):
            day = int(tl.month_start[m + 1]) - 1
            for f in range(net.size):
                t = day * DAY + 21 * HOUR + 30 * 60
                self.schedule(t, self.count, f, m, t)

    def facility_targets(self, facs: np.ndarray, s: int, horizon: int) -> np.ndarray:
        """Order-up-to levels: the demand until the next delivery lands, plus a fifth and a pack."""
        e = min(s + horizon, self.span)
        need = self.cum[facs, :, e] - self.cum[facs, :, s]
        return np.where(need > 0, np.ceil(1.2 * need) + np.array(self.pack), 0).astype(np.int64)

    def regional_targets(self, k: int) -> dict[int, np.ndarray]:
        """What each regional store must hold for its facilities' next deliveries: their targets,
        plus a pack each for the rounding of their orders up to whole packs."""
        c = self.cycles[k]
        out = {}
        for w, f in self.members.items():
            if len(f) == 0:
                out[w] = np.zeros(self.n_items, np.int64)
                continue
            tf = self.facility_targets(f, c.facility_ship, c.horizon)
            out[w] = tf.sum(axis=0) + (tf > 0).sum(axis=0) * np.array(self.pack)
        return out

    def new_lot(self, item: int, day: int, go_live: bool) -> int:
        """A supplier's lot. Stock taken over at go-live is partly short-dated, which is where the
        honest expiry write-offs of the period come from; later lots have their full shelf life."""
        it = ITEMS[item]
        if not it.lot_tracked:
            return self.untracked_lot[item]
        uni, tl = self.uni, self.tl
        self.counters["lot"] += 1
        number = f"{it.code[:3]}{tl.date_of(day).year % 100:02d}{self.counters['lot']:05d}"
        if go_live and item in self.short_dated:
            expiry = max(90, int(tl.n_days * (0.55 + 0.3 * uni())))
        elif go_live:
            expiry = max(183, int(it.shelf_life_months * 30.4 - 240 * uni()))
        else:
            expiry = day + int(it.shelf_life_months * 30.4) + int(20 * uni())
        lot = self.lots.add(item, number, expiry, True)
        if expiry - 1 < tl.n_days:
            self.schedule((expiry - 1) * DAY + 21 * HOUR, self.sweep, lot)
        return lot

    def receipt(self, k: int) -> None:
        """The central warehouse buys what the regional stores are about to pull, plus 5%."""
        c = self.cycles[k]
        t = c.receipt * DAY + c.receipt_sec
        central, n_items, pack = self.net.central, self.n_items, self.pack
        targets = self.regional_targets(k)
        for i in range(n_items):
            pull = 0
            for w, tgt in targets.items():
                key = w * n_items + i
                short = int(tgt[i]) - self.stock(key, c.facility_ship + SHIP_MIN_SHELF) - self.transit.get(key, 0)
                if short > 0:
                    pull += int(math.ceil(short / pack[i])) * pack[i]
            if pull <= 0:
                continue
            order = int(math.ceil(1.05 * pull)) - self.stock(central * n_items + i, c.central_ship + SHIP_MIN_SHELF)
            if order <= 0:
                continue
            order = int(math.ceil(order / self.case[i])) * self.case[i]
            lot = self.new_lot(i, c.receipt, k == 0)
            self.put(central * n_items + i, lot, order)
            self.counters["grn"] += 1
            self.emit(t, K_RECEIPT, central, i, lot, order, cp=-2 - ITEMS[i].supplier,
                      exp=self.lots.tracked[lot], doc=f"GRN-{self.counters['grn']:05d}")

    def central_ship(self, k: int, w: int, t: int) -> None:
        self.ship(k, self.net.central, w, t, self.regional_targets(k)[w], self.cycles[k].central_lag)

    def facility_ship(self, k: int, w: int, f: int, t: int) -> None:
        c = self.cycles[k]
        self.ship(k, w, f, t, self.facility_targets(np.array([f]), c.facility_ship, c.horizon)[0], c.facility_lag)

    def ship(self, k: int, src: int, dst: int, t: int, targets: np.ndarray, lag: tuple[int, int]) -> None:
        """Dispatch what ``dst`` lacks to reach ``targets``, one waybill per line, from ``src``'s
        first-expiring lots; the receiving legs are scheduled for the arrival day."""
        n_items, pack, step, uni = self.n_items, self.pack, self.step, self.uni
        day = t // DAY
        lines = []
        # A warehouse counts only stock it may still ship; a facility, what will outlast a few weeks.
        keep_until = day + (SHIP_MIN_SHELF if self.net.kind[dst] == WAREHOUSE else 20)
        user = self.staff(src)
        for i in np.flatnonzero(targets > 0).tolist():
            key = dst * n_items + i
            order = int(targets[i]) - self.stock(key, keep_until) - self.transit.get(key, 0)
            if order <= 0:
                continue
            order = int(math.ceil(order / pack[i])) * pack[i]
            for lot, q in self.take_fefo(src * n_items + i, order, day + SHIP_MIN_SHELF):
                self.counters["doc"] += 1
                doc = f"WB-{self.counters['doc']:06d}"
                seq = self.emit(t, K_OUT, src, i, lot, q, cp=dst, doc=doc, user=user)
                lines.append([i, lot, q, doc, seq, q, -1])   # item, lot, sent, waybill, row, to arrive, incident
                self.transit[key] = self.transit.get(key, 0) + q
        shrink = self.shrinkages.get((dst, k))
        if shrink is not None and not self.skim(lines, shrink, src, dst) and k + 1 < len(self.cycles):
            # Nothing on this delivery was worth skimming: the same hand tries the next one.
            self.shrinkages.setdefault((dst, k + 1), shrink)
        if not lines:
            return
        self.dispatched(lines, src, dst, t)
        lag_days = lag[0] + int(uni() * (lag[1] - lag[0] + 1))
        arrive = (day + lag_days) * DAY + 8 * HOUR + int(uni() * 6 * HOUR)
        self.schedule(arrive, self.arrival, src, dst, arrive, lines)

    def dispatched(self, lines: list, src: int, dst: int, t: int) -> None:
        """Hook: a delivery's lines have left ``src`` at ``t`` (a subclass may change what arrives)."""

    def skim(self, lines: list, shrink: tuple[int, str, float], src: int, dst: int) -> bool:
        """Make one waybill line of this delivery arrive short, or not at all."""
        inc, variant, frac = shrink
        pack, step = self.pack, self.step
        worth = [x for x in lines if x[2] >= max(2 * pack[x[0]], 10 * step[x[0]])]
        # Skimming goes unnoticed longest where the shelf is not about to run empty.
        worth = [x for x in worth if self.stock(dst * self.n_items + x[0]) >= x[2]] or worth
        if not worth:
            return False
        line = worth[int(self.uni() * len(worth))]
        i, q = line[0], line[2]
        missing = max(step[i], (int(q * frac) // step[i]) * step[i])
        line[5] = 0 if variant == "missing" else q - missing
        line[6] = inc
        self.evidence[line[4]] = inc
        self.info[inc] = {"src": src, "dst": dst, "item": i, "lot": line[1], "out": q,
                          "in": None if variant == "missing" else line[5], "doc": line[3]}
        return True

    def arrival(self, src: int, dst: int, t: int, lines: list) -> None:
        step, uni = self.step, self.uni
        user = self.staff(dst)
        for i, lot, q_out, doc, _out_seq, q_in, inc in lines:
            key = dst * self.n_items + i
            self.transit[key] -= q_out
            if q_in <= 0:
                continue
            self.put(key, lot, q_in)
            self.emit(t, K_IN, dst, i, lot, q_in, cp=src, user=user, exp=self.lots.tracked[lot], doc=doc, inc=inc)
            if inc < 0 and q_in >= 20 * step[i] and uni() < self.damaged_arrival_rate:
                # Breakage found on unpacking, recorded as such right after the receipt.
                broken = min(q_in, step[i] * (1 + int(uni() * 2)) * (10 if TICKS[i] > 1 else 1))
                taken = self.take_lot(key, lot, broken)
                if taken:
                    self.emit(t, K_LOSS, dst, i, lot, taken, reason=R_DAMAGED, user=user)

    def sweep(self, lot: int) -> None:
        """The evening before a lot expires, whatever is left of it anywhere is written off."""
        t = (self.lots.expiry[lot] - 1) * DAY + 21 * HOUR
        for key in dict.fromkeys(self.holders.get(lot, ())):
            q = self.take_lot(key, lot, NEVER * 1000)
            if q > 0:
                fac, item = divmod(key, self.n_items)
                self.emit(t, K_LOSS, fac, item, lot, q, reason=R_EXPIRED)

    def count(self, fac: int, m: int, t: int) -> None:
        """Month-end count of every lot on the shelf: mostly exact, now and then a unit or two out
        either way, and for a planned shortfall a lot that has quietly lost a third or more."""
        step, uni, n_items, hold = self.step, self.uni, self.n_items, self.hold
        user = self.staff(fac)
        target = None
        short = self.count_shortfalls.get((fac, m))
        if short is not None:
            inc, frac = short
            keys = sorted(self.fac_keys[fac])
            if keys:
                start = int(uni() * len(keys))
                for key in keys[start:] + keys[:start]:
                    item = key % n_items
                    best = max(hold.get(key, ()), key=lambda e: e[2], default=None)
                    if best is not None and best[2] >= max(2 * self.pack[item], 10 * step[item]):
                        target = (key, best[1], inc, frac)
                        break
        for key in sorted(self.fac_keys[fac]):
            item = key % n_items
            for entry in list(hold.get(key, ())):
                book = counted = entry[2]
                inc = -1
                if target is not None and target[0] == key and target[1] == entry[1]:
                    counted = book - max(step[item], (int(book * target[3]) // step[item]) * step[item])
                    inc = target[2]
                    self.info[inc] = {"item": item, "lot": entry[1], "book": book, "counted": counted}
                else:
                    counted = self.miscount(item, book)
                self.emit(t, K_COUNT, fac, item, entry[1], counted, user=user, inc=inc)
                entry[2] = counted
                if counted == 0:
                    hold[key].remove(entry)

    def miscount(self, item: int, book: int) -> int:
        """What a count of ``book`` finds: mostly exact, now and then a unit or two out either way."""
        step, uni = self.step, self.uni
        u = uni()
        if u < 0.025 and book >= 5 * step[item]:
            return book - step[item] * (1 + int(uni() * 2))
        if u < 0.03:
            return book + step[item]
        return book

    # ---------------------------------------------------------------- the static events
    def record(self, j: int, lot: int, qty: int) -> int:
        """Write a row that carries out static event ``j``; returns its row number."""
        seq = self.nxt()
        self.s_seq.append(seq)
        self.s_ev.append(j)
        self.s_lot.append(lot)
        self.s_qty.append(qty)
        return seq

    def other_event(self, j: int, t: int, kind: int, key: int, qty: int) -> None:
        """Hook: a static event of a kind this class does not know."""
        raise ValueError(f"unknown static event kind {kind}")

    def write_off(self, j: int, t: int, fac: int, per_mille: int) -> tuple[int, int, int, int] | None:
        """A large share of a lot far from expiry, at ``fac`` or, if its shelves hold nothing worth
        writing off, at the store that supplies it. Returns (facility, item, lot, quantity)."""
        net, n_items, step, hold = self.net, self.n_items, self.step, self.hold
        day = t // DAY
        chain = [fac]
        while net.parent[chain[-1]] >= 0:
            chain.append(int(net.parent[chain[-1]]))
        for f in chain:
            keys = sorted(self.fac_keys[f])
            start = int(self.uni() * len(keys)) if keys else 0
            for key in keys[start:] + keys[:start]:
                item = key % n_items
                thr = max(5 * self.pack[item], int(10 * self.typical[item]))
                far = [e for e in hold.get(key, ()) if day + 180 <= e[0] < NEVER and e[2] >= thr]
                if not far:
                    continue
                e = max(far, key=lambda x: x[2])
                q = max(step[item], (e[2] * per_mille // 1000 // step[item]) * step[item])
                e[2] -= q
                if e[2] == 0:
                    hold[key].remove(e)
                self.info[int(self.ev["inc"][j])] = {"item": item, "lot": e[1], "qty": q, "days_left": e[0] - day}
                return f, item, e[1], q
        return None

    def run(self) -> SimResult:
        self.plan_calendar()
        ev, n_items, heap, hold, nxt = self.ev, self.n_items, self.heap, self.hold, self.nxt
        heappop = heapq.heappop
        # What only rare events need is read from numpy when needed.
        strict_of, ref_of, fac_of = ev["strict"], ev["ref"], ev["fac"]
        referenced = set(ev["ref"][ev["kind"] == REVERSAL].tolist())
        rows_of: dict[int, list[tuple[int, int, int]]] = {}   # referenced event -> its rows (seq, lot, qty)
        s_seq, s_ev, s_lot, s_qty = self.s_seq, self.s_ev, self.s_lot, self.s_qty
        s_item: dict[int, int] = {}
        s_fac: dict[int, int] = {}

        block = 100_000   # events are read as Python lists (fast to index), a block at a time
        for base in range(0, len(ev), block):
            T = ev["t"][base:base + block].tolist()
            KEY = (ev["fac"][base:base + block] * n_items + ev["item"][base:base + block]).tolist()
            Q = ev["qty"][base:base + block].tolist()
            KIND = ev["kind"][base:base + block].tolist()
            for jj in range(len(T)):
                j = base + jj
                t = T[jj]
                while heap and heap[0][0] <= t:
                    _, _, fn, args = heappop(heap)
                    fn(*args)
                kind = KIND[jj]
                key = KEY[jj]
                if kind == DISPENSE:
                    q = Q[jj]
                    lots_here = hold.get(key)
                    if lots_here:
                        head = lots_here[0]
                        if head[2] > q:     # the common case: the first-expiring lot suffices
                            head[2] -= q
                            seq = nxt()
                            s_seq.append(seq)
                            s_ev.append(j)
                            s_lot.append(head[1])
                            s_qty.append(q)
                            if j in referenced:
                                rows_of[j] = [(seq, head[1], q)]
                            continue
                        total = 0
                        for e in lots_here:
                            total += e[2]
                    else:
                        total = 0
                    if total < q:
                        # Scenario dispensings happen in full or not at all; ordinary ones take
                        # what is left on the shelf.
                        strict = bool(strict_of[j])
                        if strict or total == 0:
                            if strict:
                                self.failed_strict += 1
                            else:
                                self.skipped += 1
                            continue
                        self.short_fills += 1
                        q = total
                    parts = self.take_fefo(key, q, -NEVER)
                    for lot, qq in parts:
                        s_seq.append(nxt())
                        s_ev.append(j)
                        s_lot.append(lot)
                        s_qty.append(qq)
                    if j in referenced:
                        rows_of[j] = [(s_seq[-len(parts) + x], lot, qq) for x, (lot, qq) in enumerate(parts)]
                elif kind == LOSS or kind == ADJUST:
                    # Breakage and keyed corrections touch the lot in use, and only what is there.
                    lots_here = hold.get(key)
                    if not lots_here:
                        continue
                    head = lots_here[0]
                    q = Q[jj]
                    if kind == LOSS:
                        q = min(q, head[2])
                        head[2] -= q
                    elif head[2] + q < 0:
                        continue
                    else:
                        head[2] += q
                    lot = head[1]
                    if head[2] == 0:
                        lots_here.pop(0)
                    s_seq.append(nxt())
                    s_ev.append(j)
                    s_lot.append(lot)
                    s_qty.append(q)
                elif kind == REVERSAL:
                    # One compensating entry per row of the mistaken dispensing (one per lot it drew on).
                    for oseq, lot, q in rows_of.get(int(ref_of[j]), ()):
                        self.put(key, lot, q)
                        seq = nxt()
                        s_seq.append(seq)
                        s_ev.append(j)
                        s_lot.append(lot)
                        s_qty.append(q)
                        self.reverses[seq] = oseq
                elif kind == WRITEOFF:
                    fac = int(fac_of[j])
                    done = self.write_off(j, t, fac, Q[jj])
                    if done is None:
                        self.failed_strict += 1
                        continue
                    f, item, lot, q = done
                    seq = nxt()
                    s_seq.append(seq)
                    s_ev.append(j)
                    s_lot.append(lot)
                    s_qty.append(q)
                    s_item[seq] = item
                    if f != fac:
                        s_fac[seq] = f
                else:
                    self.other_event(j, t, kind, key, Q[jj])
        while heap:
            _, _, fn, args = heappop(heap)
            fn(*args)

        return SimResult(
            n_rows=nxt(), static_seq=_np(s_seq), static_ev=_np(s_ev), static_lot=_np(s_lot),
            static_qty=_np(s_qty), static_item=s_item, static_fac=s_fac,
            gen={k: _np(v).astype(bool) if k == "exp" else _np(v) for k, v in self.g.items()},
            gen_doc=self.g_doc, reverses=self.reverses, evidence=self.evidence, incident_info=self.info,
            lots=self.lots, failed_strict=self.failed_strict, short_fills=self.short_fills,
            skipped=self.skipped,
        )
