"""Legitimate behaviour on the shelves: what happens to stock between deliveries and counts.

``LegitimateStock`` is the stock simulation with this seed's untidy but honest events added
through its hooks: quantities keyed ten times too large and corrected, cheap items counted a few
percent short, a fridge failure and an emergency resupply, a recalled lot written off at most
sites within days, stores that pick short and correct their books, deliveries arriving in two trips
or broken, shipments still on the road when the data ends, short-dated stock cleared at month end,
and surplus passed to a neighbouring facility. Every row stays feasible: nothing takes a lot below
zero, and nothing is put back on a lot about to expire.
"""

from __future__ import annotations

import numpy as np

from sample_data.demand import ITEM_INDEX
from sample_data.frames import DAY, GO_LIVE_DAYS, HOUR, KEYED_TEN, R_CORRECTION, R_DAMAGED, R_EXPIRED, R_RECALLED
from sample_data.legitimate.profile import Behaviours
from sample_data.network import HEALTH_CENTER, HOSPITAL, PHARMACY, WAREHOUSE
from sample_data.supply import K_ADJUST, K_DISPENSE, K_LOSS, K_OUT, NEVER, StockSimulation

CHEAP = tuple(ITEM_INDEX[c] for c in ("PCM500T", "PCM120S", "IBU400T", "AMX500C", "MET500T", "OME20C",
                                      "SYR5", "CAN20G", "GLV75", "GAU10", "NS500B"))
"""Items cheap and loose enough that counts routinely come up a few percent short."""
COLD_CHAIN = tuple(ITEM_INDEX[c] for c in ("INSG100", "EPO4KS", "TRZ150V"))
DISPENSING = (HOSPITAL, HEALTH_CENTER, PHARMACY)


class LegitimateStock(StockSimulation):
    def __init__(self, rng, net, tl, ev, *, count_shortfalls, shrinkages, short_dated,
                 beh: Behaviours, plan_rng: np.random.Generator):
        super().__init__(rng, net, tl, ev, count_shortfalls=count_shortfalls, shrinkages=shrinkages,
                         short_dated=short_dated)
        self.beh, self.prng = beh, plan_rng
        self.end_t = tl.n_days * DAY
        self.damaged_arrival_rate = beh.damaged_arrival_rate
        self.cheap = set(CHEAP)
        self.monthend = set(np.flatnonzero(plan_rng.random(net.size) < beh.monthend_expiry_share).tolist())
        self.recalled: dict[int, int] = {}          # lot -> time of the recall
        self.complying: dict[int, set[int]] = {}    # lot -> facilities that write it off
        self.stats = {k: 0 for k in ("keyed_ten", "keyed_ten_reversed", "cheap_shortfalls", "fridge_failures",
                                     "fridge_rows", "recalled_lots", "recall_rows", "short_picks",
                                     "split_deliveries", "in_transit_at_end", "late_shipments",
                                     "monthend_expiry_rows", "lateral_transfers")}

    # ---------------------------------------------------------------- timing helpers
    def next_count(self, t: int) -> int:
        """Time of the first month-end count at or after ``t`` (the end of the data if none)."""
        tl = self.tl
        m = int(tl.month_of_day[min(t // DAY, tl.n_days - 1)])
        while m < tl.n_months:
            c = (int(tl.month_start[m + 1]) - 1) * DAY + 21 * HOUR + 30 * 60
            if c > t:
                return c
            m += 1
        return self.end_t

    def office_hours(self, fac: int, day: int, hours: tuple[int, int] = (9, 15)) -> int:
        """A time during the working day at ``fac``, ``day`` or the next day it is open."""
        closed = self.net.closed
        while closed is not None and day < self.tl.n_days - 1 and closed[fac, self.tl.weekday[day]]:
            day += 1
        return day * DAY + hours[0] * HOUR + int(self.uni() * (hours[1] - hours[0]) * HOUR)

    def lasts(self, lot: int, t: int) -> bool:
        """Whether ``lot`` is still far from expiry (so stock may be put back on it) at ``t``."""
        return self.lots.expiry[lot] >= t // DAY + 3

    # ---------------------------------------------------------------- the calendar
    def plan_calendar(self) -> None:
        super().plan_calendar()
        net, tl, r, beh = self.net, self.tl, self.prng, self.beh
        n = tl.n_days
        facs = net.dispensing()
        if n < GO_LIVE_DAYS + 30:
            return
        # Fridge failures in hospital pharmacies (where most cold-chain stock is), found in the morning.
        cold = np.flatnonzero(net.kind == HOSPITAL)
        k = max(1, int(round(beh.fridges_per_scale * len(facs) / 60)))
        w = net.weight[cold] / net.weight[cold].sum()
        for f in r.choice(cold, size=min(k, len(cold)), replace=False, p=w).tolist():
            day = int(r.integers(GO_LIVE_DAYS + 14, n - 10))
            self.schedule(day * DAY + 7 * HOUR + int(r.integers(0, 2 * HOUR)), self.fridge, f)
        for _ in range(int(round(beh.recalls))):
            day = int(r.integers(int(n * 0.35), int(n * 0.75)))
            self.schedule(day * DAY + 11 * HOUR, self.recall, day * DAY + 11 * HOUR)
        # Surplus passed to a neighbour, in the last week of a month: the facilities that look
        # through their shelves that month, in turn, until one has something to pass on.
        for m in range(tl.n_months):
            lo = max(int(tl.month_start[m]) + 19, GO_LIVE_DAYS + 10)
            hi = min(int(tl.month_start[m + 1]) - 2, n - 4)
            if hi <= lo:
                continue
            for _ in range(max(1, int(round(beh.lateral_rate * len(facs))))):
                t = int(r.integers(lo, hi)) * DAY + 10 * HOUR + int(r.integers(0, 4 * HOUR))
                self.schedule(t, self.lateral, r.permutation(facs)[:6].tolist(), t)
        # Deliveries dispatched in the last days, most still on the road when the data ends.
        k = max(1, int(round(beh.late_shipment_share * len(facs))))
        for f in r.choice(facs, size=min(k, len(facs)), replace=False).tolist():
            t = (n - int(r.integers(1, 4))) * DAY + 9 * HOUR + int(r.integers(0, 3 * HOUR))
            self.schedule(t, self.late_shipment, f, t)

    # ---------------------------------------------------------------- keyed ten times too large
    def other_event(self, j: int, t: int, kind: int, key: int, qty: int) -> None:
        if kind != KEYED_TEN:
            super().other_event(j, t, kind, key, qty)
        uni = self.uni
        lots_here = self.hold.get(key)
        if not lots_here:
            self.skipped += 1
            return
        limit = min(self.next_count(t), self.end_t) - 10 * 60
        if uni() < 0.5:
            fix = t + 600 + int(uni() * 3 * HOUR)
        else:
            # Found when the day's figures are checked, a day or more later, in working hours.
            later = t // DAY + 1 + int(uni() * self.beh.keyed_ten_days)
            fix = max(t + 600, self.office_hours(key // self.n_items, later))
        if fix >= limit:
            fix = t + 600 + int(uni() * 3 * HOUR)
        # The slip is on the first lot that holds ten times the quantity.
        entry = next((e for e in lots_here if e[2] >= 10 * qty), None)
        if entry is not None and fix < limit and self.lasts(entry[1], fix):
            entry[2] -= 10 * qty
            lot = entry[1]
            if entry[2] == 0:
                lots_here.remove(entry)
            seq = self.record(j, lot, 10 * qty)
            self.stats["keyed_ten"] += 1
            self.schedule(fix, self.correct_keyed, j, key, lot, qty, seq, fix)
            return
        # The slip did not happen here (not that much on the shelf): an ordinary dispensing.
        q = min(qty, self.stock(key))
        for lot, qq in self.take_fefo(key, q, -NEVER):
            self.record(j, lot, qq)

    def correct_keyed(self, j: int, key: int, lot: int, qty: int, seq: int, t: int) -> None:
        """Either a partial correction of the nine tenths too many, or the whole entry reversed and
        the dispensing entered again with the right quantity."""
        fac, item = divmod(key, self.n_items)
        user = int(self.ev["user"][j])
        if self.uni() < 0.6:
            self.put(key, lot, 9 * qty)
            self.emit(t, K_ADJUST, fac, item, lot, 9 * qty, reason=R_CORRECTION, user=user)
            return
        self.put(key, lot, 10 * qty)
        rev = self.emit(t, K_ADJUST, fac, item, lot, 10 * qty, reason=R_CORRECTION, user=user)
        self.reverses[rev] = seq
        self.stats["keyed_ten_reversed"] += 1
        self.schedule(t + 60 + int(self.uni() * 240), self.reenter, j, key, lot, qty)

    def reenter(self, j: int, key: int, lot: int, qty: int) -> None:
        taken = self.take_lot(key, lot, qty)
        if taken:
            fac, item = divmod(key, self.n_items)
            t = self.heap_time
            self.emit(t, K_DISPENSE, fac, item, lot, taken, user=int(self.ev["user"][j]),
                      card=int(self.ev["card"][j]), rx=int(self.ev["rx"][j]))

    def schedule(self, t: int, fn, *args) -> None:
        # Remember each piece of work's time, so that work which does not take it as an argument
        # (``reenter``) can date its rows.
        super().schedule(t, self._at, t, fn, args)

    def _at(self, t: int, fn, args) -> None:
        self.heap_time = t
        fn(*args)

    # ---------------------------------------------------------------- counts
    def miscount(self, item: int, book: int) -> int:
        step = self.step[item]
        if item in self.cheap and book >= 20 * step and self.uni() < self.beh.cheap_shortfall_rate:
            frac = self.beh.cheap_shortfall_size * (0.6 + 0.8 * self.uni())
            self.stats["cheap_shortfalls"] += 1
            return book - max(step, int(book * frac) // step * step)
        return super().miscount(item, book)

    def count(self, fac: int, m: int, t: int) -> None:
        if fac in self.monthend:
            self.clear_short_dated(fac, m, t)
        super().count(fac, m, t)

    def clear_short_dated(self, fac: int, m: int, t: int) -> None:
        """Write off, at the month-end count, every lot too close to expiry to be used in time."""
        until = t // DAY + int(self.beh.monthend_expiry_days)
        for key in sorted(self.fac_keys[fac]):
            for entry in list(self.hold.get(key, ())):
                if entry[0] <= until and entry[0] < NEVER and entry[2] > 0:
                    q = self.take_lot(key, entry[1], entry[2])
                    self.emit(t, K_LOSS, fac, key % self.n_items, entry[1], q, reason=R_EXPIRED)
                    self.stats["monthend_expiry_rows"] += 1

    # ---------------------------------------------------------------- deliveries
    def dispatched(self, lines: list, src: int, dst: int, t: int) -> None:
        """A store picks a line short but books the full quantity; its correction follows once the
        receiving facility reports what came."""
        if self.net.kind[src] != WAREHOUSE:
            return
        uni, step = self.uni, self.step
        for line in lines:
            i, lot, q = line[0], line[1], line[2]
            if line[6] >= 0 or q < 10 * step[i] or uni() >= self.beh.short_ship_rate:
                continue
            fix = self.office_hours(src, t // DAY + 6 + int(uni() * 8))
            if fix >= self.end_t or not self.lasts(lot, fix):
                continue
            missing = max(step[i], int(q * self.beh.short_ship_size * (0.5 + uni())) // step[i] * step[i])
            missing = min(missing, q - step[i])
            line[5] = q - missing
            self.stats["short_picks"] += 1
            self.schedule(fix, self.short_pick_found, src, i, lot, missing, line[3], fix)

    def short_pick_found(self, src: int, item: int, lot: int, qty: int, doc: str, t: int) -> None:
        self.put(src * self.n_items + item, lot, qty)
        self.emit(t, K_ADJUST, src, item, lot, qty, reason=R_CORRECTION, doc=doc)

    def arrival(self, src: int, dst: int, t: int, lines: list) -> None:
        if t >= self.end_t:
            self.stats["in_transit_at_end"] += len(lines)
            return
        uni, step = self.uni, self.step
        first, rest = [], []
        for line in lines:
            i, lot, q_out, doc, seq, q_in, inc = line
            if inc < 0 and q_in == q_out and q_in >= 4 * step[i] and uni() < self.beh.split_delivery_rate:
                q1 = max(step[i], int(q_in * (0.4 + 0.4 * uni())) // step[i] * step[i])
                first.append([i, lot, q1, doc, seq, q1, inc])
                rest.append([i, lot, q_out - q1, doc, seq, q_in - q1, inc])
                self.stats["split_deliveries"] += 1
            else:
                first.append(line)
        super().arrival(src, dst, t, first)
        if rest:
            t2 = t + (1 + int(uni() * 3)) * DAY
            self.schedule(t2, self.second_trip, src, dst, t2, rest)
        for line in first:
            self.recalled_on_arrival(dst, line[0], line[1], t)

    def second_trip(self, src: int, dst: int, t: int, lines: list) -> None:
        if t >= self.end_t:
            self.stats["in_transit_at_end"] += len(lines)
            return
        StockSimulation.arrival(self, src, dst, t, lines)
        for line in lines:
            self.recalled_on_arrival(dst, line[0], line[1], t)

    def late_shipment(self, f: int, t: int) -> None:
        """A top-up of what ``f`` used most this month, dispatched in the last days."""
        src = int(self.net.parent[f])
        day = t // DAY
        used = self.cum[f, :, min(day, self.span)] - self.cum[f, :, max(day - 30, 0)]
        top = np.argsort(-used, kind="stable")[: 1 + int(self.uni() * 3)]
        targets = np.zeros(self.n_items, np.int64)
        for i in top.tolist():
            if used[i] > 0:
                targets[i] = self.stock(f * self.n_items + i, day + 20) + int(used[i])
        if targets.any():
            self.stats["late_shipments"] += 1
            self.ship(-1, src, f, t, targets, (2, 5))

    # ---------------------------------------------------------------- accidents and recalls
    def fridge(self, f: int) -> None:
        """A fridge fails overnight: every cold-chain item on the shelf is written off as damaged,
        and the store sends replacements the same day."""
        t = self.heap_time
        lost = False
        for i in COLD_CHAIN:
            key = f * self.n_items + i
            for entry in list(self.hold.get(key, ())):
                q = self.take_lot(key, entry[1], entry[2])
                if q:
                    self.emit(t, K_LOSS, f, i, entry[1], q, reason=R_DAMAGED)
                    self.stats["fridge_rows"] += 1
                    lost = True
        if lost:
            self.stats["fridge_failures"] += 1
            t2 = t + 3 * HOUR
            self.schedule(t2, self.cold_resupply, f, t2)

    def cold_resupply(self, f: int, t: int) -> None:
        day = t // DAY
        targets = np.zeros(self.n_items, np.int64)
        need = self.facility_targets(np.array([f]), day, 35)[0]
        for i in COLD_CHAIN:
            targets[i] = need[i]
        self.ship(-1, int(self.net.parent[f]), f, t, targets, (1, 1))

    def recall(self, t: int) -> None:
        """The lot held at the most places is recalled: stores write it off at once, most facilities
        within the week, a few never get round to it."""
        best, best_n = -1, 0
        for lot, keys in self.holders.items():
            if lot in self.recalled:
                continue
            n = sum(1 for key in set(keys) if any(e[1] == lot and e[2] > 0 for e in self.hold.get(key, ())))
            if n > best_n:
                best, best_n = lot, n
        if best < 0:
            return
        self.recalled[best] = t
        self.stats["recalled_lots"] += 1
        complying = set()
        limit = min(self.next_count(t), self.end_t) - HOUR
        for key in sorted(set(self.holders[best])):
            f = key // self.n_items
            store = self.net.kind[f] == WAREHOUSE
            if store or self.uni() < self.beh.recall_compliance:
                complying.add(f)
                when = t + int(self.uni() * 6 * HOUR) if store else \
                    self.office_hours(f, t // DAY + 1 + int(self.uni() * 6))
                when = max(t + 60, min(when, limit))
                self.schedule(when, self.recall_writeoff, key, best, when)
        self.complying[best] = complying

    def recall_writeoff(self, key: int, lot: int, t: int) -> None:
        q = self.take_lot(key, lot, NEVER * 1000)
        if q:
            self.emit(t, K_LOSS, key // self.n_items, key % self.n_items, lot, q, reason=R_RECALLED)
            self.stats["recall_rows"] += 1

    def recalled_on_arrival(self, dst: int, item: int, lot: int, t: int) -> None:
        """A recalled lot that was on the road when the recall came is written off on arrival."""
        if lot in self.recalled and t >= self.recalled[lot]:
            if dst in self.complying[lot] or self.net.kind[dst] == WAREHOUSE or self.uni() < self.beh.recall_compliance:
                self.complying[lot].add(dst)
                self.recall_writeoff(dst * self.n_items + item, lot, t)

    # ---------------------------------------------------------------- surplus to a neighbour
    def lateral(self, facs: list[int], t: int) -> None:
        """The first of ``facs`` that holds stock it will not use in time passes it on."""
        for f in facs:
            if self.pass_surplus(f, t):
                return

    def pass_surplus(self, f: int, t: int) -> bool:
        """Stock that will expire before ``f`` can use it, or far more than it needs, goes to the
        facility of the region that uses the item most."""
        net, n_items, step, span = self.net, self.n_items, self.step, self.span
        day = t // DAY
        peers = net.in_region(int(net.region[f]), DISPENSING)
        peers = peers[peers != f]
        keys = sorted(self.fac_keys[f])
        if len(peers) == 0 or not keys or (net.closed is not None and net.closed[f, self.tl.weekday[day]]):
            return False
        start = int(self.uni() * len(keys))
        for key in keys[start:] + keys[:start]:
            i = key % n_items
            for entry in self.hold.get(key, ()):
                exp_day, lot, q = entry
                if not (day + 25 <= exp_day < NEVER) or lot in self.recalled:
                    continue
                use = self.cum[f, i, min(exp_day, span)] - self.cum[f, i, min(day, span)]
                month = self.cum[f, i, min(day + 30, span)] - self.cum[f, i, min(day, span)]
                surplus = q - max(int(use), 0) if exp_day < day + 120 else q - 2 * int(month) - self.pack[i]
                surplus = surplus // step[i] * step[i]
                if surplus < max(self.pack[i], 5 * step[i]):
                    continue
                need = self.cum[peers, i, min(day + 60, span)] - self.cum[peers, i, min(day, span)]
                if need.max() < surplus // 2:
                    continue
                dst = int(peers[int(np.argmax(need))])
                self.take_lot(key, lot, surplus)
                self.counters["doc"] += 1
                doc = f"WB-{self.counters['doc']:06d}"
                seq = self.emit(t, K_OUT, f, i, lot, surplus, cp=dst, doc=doc)
                dkey = dst * n_items + i
                self.transit[dkey] = self.transit.get(dkey, 0) + surplus
                arrive = (day + 1) * DAY + 9 * HOUR + int(self.uni() * 5 * HOUR)
                self.schedule(arrive, self.arrival, f, dst, arrive, [[i, lot, surplus, doc, seq, surplus, -1]])
                self.stats["lateral_transfers"] += 1
                return True
        return False
