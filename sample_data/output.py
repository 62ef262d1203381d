"""Turning the simulation's integer-coded rows into the contract's CSV files.

Everything is formatted column-wise with numpy (timestamps, dates, decimal quantities) and written
with the csv module, because at a million rows a per-row Python formatter would cost more than the
whole simulation. The column lists below are the contract's, in its order, and nothing else.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from sample_data.catalog import ITEMS, SUPPLIERS
from sample_data.demand import TICKS
from sample_data.frames import ADJUST, DAY, DISPENSE, DISPENSE_KINDS, KEYED_TEN, LOSS, REASONS, REVERSAL, WRITEOFF, Columns
from sample_data.supply import K_ADJUST, K_DISPENSE, K_LOSS, KINDS, SimResult

FACILITY_COLUMNS = ("code", "name", "region", "kind", "parent_code")
ITEM_COLUMNS = ("code", "name", "atc_code", "form", "unit", "controlled", "max_dispense_quantity")
PATIENT_COLUMNS = ("health_card_id", "birth_year", "sex", "home_facility_code", "deceased_on")
PRESCRIPTION_COLUMNS = ("prescription_id", "health_card_id", "facility_code", "prescriber", "item_code",
                        "quantity", "days_supply", "issued_on", "diagnosis_code")
LEDGER_COLUMNS = ("entry_id", "occurred_at", "facility_code", "kind", "item_code", "lot_number",
                  "expiry_date", "quantity", "health_card_id", "prescription_id", "counterparty_code",
                  "reason", "recorded_by", "document_number", "reverses")
TRUTH_COLUMNS = ("incident_id", "scenario", "entry_id", "facility_code", "description")

UTC_OFFSET = "+02:00"
"""Libya keeps Eastern European Time all year (UTC+2, no daylight saving)."""

_STATIC_KIND = {DISPENSE: K_DISPENSE, LOSS: K_LOSS, WRITEOFF: K_LOSS, REVERSAL: K_ADJUST, ADJUST: K_ADJUST,
                KEYED_TEN: K_DISPENSE}


def write_csv(path: Path, header: tuple[str, ...], columns: list) -> int:
    """Write aligned columns (sequences of str) under ``header``; returns the number of data rows."""
    return write_chunks(path, header, [columns])


def write_chunks(path: Path, header: tuple[str, ...], chunks) -> int:
    """Write column chunks one after another, so that a million rows never sit in memory as text.

    Columns in which no value needs quoting are joined directly, which is about twice as fast as
    the csv module; any column that does need quoting sends the chunk through ``csv.writer``.
    """
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for columns in chunks:
            cols = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in columns]
            if not cols or not cols[0]:
                continue
            n += len(cols[0])
            if any(_needs_quoting(c) for c in cols):
                writer.writerows(zip(*cols))
            else:
                fh.write("\n".join(map(",".join, zip(*cols))))
                fh.write("\n")
    return n


def _needs_quoting(values: list[str]) -> bool:
    joined = "\x00".join(values)
    return any(ch in joined for ch in (",", '"', "\n", "\r"))


def format_quantities(qty: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Ticks to the contract's text: whole units, or one decimal place for divisible units."""
    qty = np.asarray(qty, np.int64)
    tick = TICKS[np.asarray(item, np.int64)]
    a = np.abs(qty)
    whole = a // tick
    frac = a % tick
    top = int(whole.max(initial=0))
    if top <= 100_000:
        out = np.array([str(i) for i in range(top + 1)], dtype=object)[whole]
    else:
        out = whole.astype(str).astype(object)
    m = frac != 0
    if m.any():
        out[m] = [f"{w}.{f}" for w, f in zip(whole[m].tolist(), frac[m].tolist())]
    neg = qty < 0
    if neg.any():
        out[neg] = ["-" + s for s in out[neg].tolist()]
    return out


def format_days(start: date, days: np.ndarray) -> np.ndarray:
    days = np.asarray(days, np.int64)
    if len(days) == 0:
        return np.zeros(0, dtype=object)
    lo, hi = int(days.min()), int(days.max())
    base = np.datetime64(start.isoformat(), "D")
    table = np.datetime_as_string(base + np.arange(lo, hi + 1).astype("timedelta64[D]"), unit="D").astype(object)
    return table[days - lo]


def format_times(start: date, seconds: np.ndarray) -> np.ndarray:
    """ISO 8601 local times with the Libyan offset, e.g. ``2026-03-01T09:15:00+02:00``."""
    seconds = np.asarray(seconds, np.int64)
    day, sec = np.divmod(seconds, DAY)
    dates = format_days(start, day) if len(day) else np.zeros(0, dtype=object)
    return dates + _clock()[sec]


@functools.cache
def _clock() -> np.ndarray:
    """Every second of the day as ``THH:MM:SS+02:00``."""
    return np.array([f"T{h:02d}:{m:02d}:{x:02d}{UTC_OFFSET}" for h in range(24) for m in range(60)
                     for x in range(60)], dtype=object)


def lookup(values: list[str], index: np.ndarray, empty_below: int = 0) -> np.ndarray:
    """``values[index]`` as object strings, with an empty cell where ``index < empty_below``."""
    table = np.array(list(values) + [""], dtype=object)
    index = np.asarray(index, np.int64)
    return table[np.where(index < empty_below, len(values), index)]


@dataclass
class LedgerRows:
    """The ledger in application order, integer-coded; also what truth descriptions are built from."""

    t: np.ndarray
    kind: np.ndarray
    fac: np.ndarray
    item: np.ndarray
    lot: np.ndarray
    qty: np.ndarray
    card: np.ndarray
    rx: np.ndarray
    cp: np.ndarray          # facility index; <= -2 a supplier; -1 none
    reason: np.ndarray
    user: np.ndarray
    exp: np.ndarray         # whether the row states its lot's expiry
    doc: np.ndarray         # object strings
    reverses: np.ndarray    # row index, -1 none
    inc: np.ndarray         # incident number, -1 none


def assemble(sim: SimResult, ev: Columns, net_users: np.ndarray) -> LedgerRows:
    """Merge the rows of static events and the simulation's own rows into one table, by row number.

    ``net_users`` gives, per facility, a staff user to record rows the simulation moved there.
    """
    n = sim.n_rows
    out = {k: np.full(n, -1, np.int64) for k in ("t", "kind", "fac", "item", "lot", "qty", "card", "rx",
                                                   "cp", "reason", "user", "reverses", "inc")}
    exp = np.zeros(n, bool)
    doc = np.full(n, "", dtype=object)

    s, e = sim.static_seq, sim.static_ev
    out["t"][s] = ev["t"][e]
    kind_map = np.zeros(int(max(_STATIC_KIND)) + 1, np.int64)
    for k, v in _STATIC_KIND.items():
        kind_map[k] = v
    out["kind"][s] = kind_map[ev["kind"][e]]
    fac = ev["fac"][e].copy()
    if sim.static_fac:
        pos = np.searchsorted(s, np.array(list(sim.static_fac)))
        fac[pos] = np.array(list(sim.static_fac.values()))
    out["fac"][s] = fac
    item = ev["item"][e].copy()
    if sim.static_item:
        pos = np.searchsorted(s, np.array(list(sim.static_item)))
        item[pos] = np.array(list(sim.static_item.values()))
    out["item"][s] = item
    out["lot"][s] = sim.static_lot
    out["qty"][s] = sim.static_qty
    is_disp = np.isin(ev["kind"][e], DISPENSE_KINDS)
    out["card"][s] = np.where(is_disp, ev["card"][e], -1)
    out["rx"][s] = np.where(is_disp, ev["rx"][e], -1)
    out["reason"][s] = ev["reason"][e]
    user = ev["user"][e].copy()
    if sim.static_fac:
        # Recorded by someone who works where the write-off happened.
        pos = np.searchsorted(s, np.array(list(sim.static_fac)))
        user[pos] = net_users[fac[pos]]
    out["user"][s] = user
    out["inc"][s] = ev["inc"][e]

    g = sim.gen
    gs = g["seq"]
    for k in ("t", "kind", "fac", "item", "lot", "qty", "cp", "reason", "user", "card", "rx"):
        out[k][gs] = g[k]
    exp[gs] = g["exp"]
    doc[gs] = np.array(sim.gen_doc, dtype=object)
    if sim.evidence:
        out["inc"][np.array(list(sim.evidence))] = np.array(list(sim.evidence.values()))
    if sim.reverses:
        out["reverses"][np.array(list(sim.reverses))] = np.array(list(sim.reverses.values()))
    if np.any(np.diff(out["t"]) < 0):
        raise AssertionError("ledger rows are not in time order")
    return LedgerRows(exp=exp, doc=doc, **out)


def entry_id(tag: str, row: int) -> str:
    return f"{tag}-{row:08d}"


def ledger_chunks(rows: LedgerRows, sim: SimResult, *, tag: str, start: date, codes: list[str],
                  cards: list[str], rx_ids: list[str], user_ids: list[str], size: int = 50_000):
    """The ledger's columns in the contract's order, a slice of rows at a time."""
    lots = sim.lots
    lot_expiry = format_days(start, np.minimum(np.array(lots.expiry, np.int64), 10**5))
    lot_expiry[~np.array(lots.tracked, bool)] = ""
    lot_numbers = np.array(lots.number, dtype=object)
    kinds = np.array(KINDS, dtype=object)
    item_codes = np.array([it.code for it in ITEMS], dtype=object)
    reasons = np.array(REASONS, dtype=object)
    suppliers = np.array(SUPPLIERS, dtype=object)
    n = len(rows.t)
    for lo in range(0, n, size):
        sl = slice(lo, min(n, lo + size))
        cp = rows.cp[sl]
        counterparty = lookup(codes, cp)
        supplier = cp <= -2
        if supplier.any():
            counterparty[supplier] = suppliers[-cp[supplier] - 2]
        rev = rows.reverses[sl]
        reverses = np.full(len(rev), "", dtype=object)
        has = np.flatnonzero(rev >= 0)
        reverses[has] = [entry_id(tag, r) for r in rev[has].tolist()]
        yield [
            [entry_id(tag, i) for i in range(sl.start, sl.stop)],
            format_times(start, rows.t[sl]),
            lookup(codes, rows.fac[sl]),
            kinds[rows.kind[sl]],
            item_codes[rows.item[sl]],
            lot_numbers[rows.lot[sl]],
            np.where(rows.exp[sl], lot_expiry[rows.lot[sl]], ""),
            format_quantities(rows.qty[sl], rows.item[sl]),
            lookup(cards, rows.card[sl]),
            lookup(rx_ids, rows.rx[sl]),
            counterparty,
            reasons[rows.reason[sl]],
            lookup(user_ids, rows.user[sl]),
            rows.doc[sl],
            reverses,
        ]
