"""The bulk import's plan: the chain heads it writes after, and the balances, lots and effects of
its rows in application order (the rule book's lot rule and never-below-zero rule)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from stock import chain
from stock import rules
from stock.csvread import Sheet
from stock.models import ChainHead, Lot
from stock.quantities import from_milli
from stock.rules import SUBTRACTS


def _lock_heads(session: Session, facility_ids: list[int]) -> dict[int, list]:
    """Lock the chain heads of every facility the import writes to, in id order (no deadlocks)."""
    heads: dict[int, list] = {}
    for start in range(0, len(facility_ids), 500):
        chunk = facility_ids[start:start + 500]
        rows = session.execute(select(ChainHead.facility_id, ChainHead.length, ChainHead.head_hash)
                               .where(ChainHead.facility_id.in_(chunk))
                               .order_by(ChainHead.facility_id).with_for_update())
        for fid, length, head_hash in rows:
            heads[fid] = [int(length), head_hash]
    for fid in facility_ids:
        if fid not in heads:
            session.add(ChainHead(facility_id=fid, length=0, head_hash=chain.GENESIS))
            heads[fid] = [0, chain.GENESIS]
    session.flush()
    return heads


@dataclass
class _Plan:
    effect: np.ndarray               # signed change to on hand of each row (thousandths)
    book: np.ndarray                 # on hand by the books before each row (used on counts)
    lots: dict[tuple, list]          # (item_id, lot_number) -> [lot_id or None, expiry ISO or ""]
    balances: dict[tuple, int]       # (facility_id, item_id, lot_number) -> on hand, touched keys only
    existing_balance: set[tuple]


def _stored_lots_and_balances(session: Session) -> tuple[dict[tuple, list], dict[tuple, int]]:
    lots: dict[tuple, list] = {
        (item_id, lot_number): [lot_id, exp.isoformat() if exp else ""]
        for lot_id, item_id, lot_number, exp in session.execute(
            select(Lot.id, Lot.item_id, Lot.lot_number, Lot.expiry_date))
    }
    lot_key = {v[0]: k for k, v in lots.items()}
    balances: dict[tuple, int] = {}
    for fid, lot_id, on_hand in session.execute(text("SELECT facility_id, lot_id, on_hand FROM balance")):
        balances[(fid, *lot_key[lot_id])] = int(on_hand)
    return lots, balances


def _groups(df: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Group number of each row (numbered in order of first appearance) and each group's first row."""
    codes = df.groupby(columns, sort=False).ngroup().to_numpy()
    _, first = np.unique(codes, return_index=True)
    return codes, first


def _simulate_fast(df: pd.DataFrame, stored_lots: dict[tuple, list], stored: dict[tuple, int]) -> _Plan | None:
    """The balance simulation without a Python loop over rows; None when any row might be refused.

    Each (facility, item, lot)'s rows, in application order, form segments cut at counts: a count
    sets on hand to what was counted, every other row adds its signed quantity. On hand after a
    row is then the segment's start (the stored balance, or the count's quantity) plus a running
    sum within the segment. When nothing is refused this is exactly what ``_simulate`` computes;
    when anything might be (a negative balance, a lot problem), the caller runs ``_simulate``,
    which names each offending row.
    """
    m = len(df)
    kind = df["kind"]
    q = df["_q"].to_numpy(dtype="int64")
    if m and int(np.abs(q).max()) >= (2 ** 62) // (m + len(stored) + 1):
        return None  # sums could leave int64: let the loop work with Python integers
    is_count = (kind == "count").to_numpy()
    is_sub = kind.isin(SUBTRACTS).to_numpy()

    # Lots: a new lot enters by its first row, which must be able to create it.
    lcodes, lfirst = _groups(df, ["_iid", "lot_number"])
    iids, lotn = df["_iid"].to_numpy(), df["lot_number"].to_numpy(dtype=object)
    exps, kinds = df["expiry_date"].to_numpy(dtype=object), kind.to_numpy(dtype=object)
    reasons = df["reason"].str.strip().to_numpy(dtype=object)
    lots = dict(stored_lots)
    lot_exp = np.empty(len(lfirst), dtype=object)
    days = df["_day"].to_numpy(dtype=object)
    for g, j in enumerate(lfirst):
        key = (int(iids[j]), lotn[j])
        lot = lots.get(key)
        if lot is None:
            if rules.lot_problem(kinds[j], "", lotn[j], exps[j], None, days[j], reasons[j]) is not None:
                return None
            lot = lots[key] = [None, exps[j]]
        lot_exp[g] = lot[1]
    # The rest of the rule book's lot rule, over every row at once.
    row_exp = lot_exp[lcodes]
    if (rules.expiry_differs(exps, row_exp) | rules.expired_on_receipt(kinds, row_exp, days, reasons)).any():
        return None

    # Balances, rows grouped by (facility, item, lot) in application order.
    bcodes, bfirst = _groups(df, ["_fid", "_iid", "lot_number"])
    fids = df["_fid"].to_numpy()
    keys = [(int(fids[j]), int(iids[j]), lotn[j]) for j in bfirst]
    init = np.fromiter((stored.get(k, 0) for k in keys), dtype="int64", count=len(keys))
    perm = np.argsort(bcodes, kind="stable")
    g, cnt, qs = bcodes[perm], is_count[perm], q[perm]
    c = np.where(cnt, 0, np.where(is_sub[perm], -qs, qs))
    start = np.ones(m, dtype=bool)
    start[1:] = g[1:] != g[:-1]
    seg_start = start | cnt
    sid = np.cumsum(seg_start) - 1
    base = np.where(cnt, qs, init[g])[seg_start][sid]
    total = np.cumsum(c)
    after = base + total - (total - c)[seg_start][sid]
    if (after < 0).any():
        return None
    before = np.empty(m, dtype="int64")
    before[1:] = after[:-1]
    before[start] = init[g[start]]
    effect = np.empty(m, dtype="int64")
    book = np.empty(m, dtype="int64")
    effect[perm] = np.where(cnt, qs - before, c)
    book[perm] = before
    end = np.ones(m, dtype=bool)
    end[:-1] = g[1:] != g[:-1]
    balances = dict(zip((keys[k] for k in g[end]), after[end].tolist()))
    return _Plan(effect, book, lots, balances, set(stored))


def _simulate(sheet: Sheet, df: pd.DataFrame, stored_lots: dict[tuple, list], stored: dict[tuple, int]) -> _Plan:
    """One pass in application order: lots, effects, counts, and the never-below-zero rule.

    The exact, sequential form (a count sets stock to what was counted, so each row depends on
    the ones before it), run when the fast pass finds something to refuse: it names each row.
    """
    lots = dict(stored_lots)
    balances = dict(stored)
    existing_balance = set(balances)
    m = len(df)
    kinds, qty = df["kind"].tolist(), df["_q"].tolist()
    fids, iids, lotn = df["_fid"].tolist(), df["_iid"].tolist(), df["lot_number"].tolist()
    exps, rows = df["expiry_date"].tolist(), df["_row"].tolist()
    items, facs = df["item_code"].tolist(), df["facility_code"].tolist()
    effect: list[int] = [0] * m
    book: list[int] = [0] * m
    touched: set[tuple] = set()
    days, reasons = df["_day"].tolist(), df["reason"].tolist()
    for j in range(m):
        kind, lk, exp = kinds[j], (iids[j], lotn[j]), exps[j]
        lot = lots.get(lk)
        problem = rules.lot_problem(kind, items[j], lotn[j], exp, None if lot is None else lot[1], days[j],
                                    reasons[j])
        if problem is not None:
            sheet.report_row(rows[j], problem.field, problem.message)
            continue
        if lot is None:
            lot = lots[lk] = [None, exp]
        bkey = (fids[j], iids[j], lotn[j])
        on_hand = balances.get(bkey, 0)
        eff = rules.signed(kind, qty[j], on_hand)
        book[j] = on_hand
        if on_hand + eff < 0:
            what = f"lot {lotn[j]}" if lotn[j] else "the untracked lot"
            sheet.report_row(rows[j], "quantity",
                             f"insufficient stock of {items[j]} {what} at {facs[j]}: "
                             f"on hand {from_milli(on_hand)}, asked {from_milli(-eff)}")
            continue
        balances[bkey] = on_hand + eff
        touched.add(bkey)
        effect[j] = eff
    return _Plan(np.array(effect, dtype=object), np.array(book, dtype=object), lots,
                 {k: balances[k] for k in touched}, existing_balance)

