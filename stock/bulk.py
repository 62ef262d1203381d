"""The bulk form of the write path, for imports of up to millions of rows.

It keeps every guarantee of ``stock.ledger.post``: the same refusals and the same recorded policy
breaks, idempotency by entry_id, balances that never go below zero and stay equal to the ledger,
and a hash chain identical to the one ``post`` would have built for the same rows in the same
order. It differs only in how: columns are validated with vectorised masks, balances are simulated
in one pass in ``occurred_at`` order, and rows are written with the driver's executemany (SQLite)
or COPY (PostgreSQL) inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import rules
from stock.bulk_check import (  # noqa: F401 - part of this module's interface
    CONTENT,
    LEDGER_COLUMNS,
    _all_entry_ids,
    _check_reverses,
    _check_times,
    _content_key,
    _recorded_us,
    _stored_content,
    _validate_shape,
)
from stock.bulk_db import (  # noqa: F401 - part of this module's interface
    PatientIds,
    _driver,
    db_bool,
    db_dates,
    ids_or_none,
    insert_sql,
    lookup,
    null_value,
    nulls,
    patient_ids,
    upsert_rows,
)
from stock.bulk_plan import _lock_heads, _simulate, _simulate_fast, _stored_lots_and_balances  # noqa: F401
from stock.bulk_write import BULK_INDEX_THRESHOLD, INSERT_COLUMNS, canonical_texts, link_all, _write  # noqa: F401
from stock.csvread import ImportFailed, Sheet
from stock.errors import EntryConflict
from stock.models import Facility, Item


@dataclass
class BulkResult:
    added: int = 0
    already_present: int = 0
    unregistered_patients: int = 0


def post_frame(session: Session, sheet: Sheet, *, now: datetime,
               progress: Callable[[str, int, int], None] | None = None,
               catch_up: timedelta | None = None) -> BulkResult:
    """Validate and write the ledger rows of ``sheet`` in the caller's transaction.

    Raises ImportFailed naming every bad row; the caller rolls back. ``catch_up``: the rule book's
    catch-up window, as for ``stock.ledger.post``.
    """
    progress = progress or (lambda phase, done, total: None)
    if sheet.problems:
        raise ImportFailed(sheet.problems)
    frame = sheet.frame
    for c in LEDGER_COLUMNS:  # an optional column left out of the header is empty throughout
        if c not in frame.columns:
            frame[c] = ""
    n = len(frame)
    result = BulkResult()
    if n == 0:
        return result
    facilities = dict(session.execute(select(Facility.code, Facility.id)).all())
    items = {code: (iid, unit) for code, iid, unit in session.execute(select(Item.code, Item.id, Item.unit))}
    progress("validating", 0, n)
    ts, expiry, qty = _validate_shape(sheet, facilities, items)
    if sheet.problems:
        raise ImportFailed(sheet.problems)

    occurred_us = ts
    recorded_us = _recorded_us(sheet, now)

    # Idempotency: rows already stored (or repeated in the file) are skipped when identical and
    # refused when not. Rows are compared value by value only when there is something to compare.
    keep = np.ones(n, dtype=bool)
    dup = frame["entry_id"].duplicated(keep="first").to_numpy()
    session.flush()
    stored_ids = _all_entry_ids(_driver(session)[0])
    hit = frame["entry_id"].isin(stored_ids).to_numpy() if stored_ids else np.zeros(n, dtype=bool)
    del stored_ids
    if not dup.any() and not hit.any():
        cols: dict[str, list] = {}
        entry_ids: list[str] = []
    else:
        cols = {c: sheet.col(c).tolist() for c in CONTENT if c not in ("quantity", "occurred_at")}
        cols["quantity"] = qty.tolist()
        cols["occurred_at"] = occurred_us.tolist()
        entry_ids = sheet.col("entry_id").tolist()
        cols["entry_id"] = entry_ids
    if dup.any():
        first: dict[str, int] = {}
        for i, eid in enumerate(entry_ids):
            if eid in first:
                j = first[eid]
                if rules.content_differences(_content_key(cols, j), _content_key(cols, i)):
                    sheet.report_row(i, "entry_id", rules.MSG_DUPLICATE % {"entry": eid, "line": j + 2})
                keep[i] = False
            else:
                first[eid] = i
    stored = _stored_content(session, [e for e, k, h in zip(entry_ids, keep, hit) if k and h]) if hit.any() else {}
    if stored:
        for i, eid in enumerate(entry_ids):
            if keep[i] and eid in stored:
                keep[i] = False
                diffs = rules.content_differences(stored[eid], _content_key(cols, i))
                if diffs:
                    sheet.report_row(i, "entry_id", EntryConflict(eid, diffs).message)
                else:
                    result.already_present += 1
    if sheet.problems:
        raise ImportFailed(sheet.problems)
    _check_times(sheet, occurred_us, recorded_us, keep, catch_up)
    if sheet.problems:
        raise ImportFailed(sheet.problems)

    # Apply in recording order, as post() did (the chain's order, in which stock never goes below
    # zero): by recorded_at, then occurred_at, ties in file order. A data set exported from Dawa
    # carries recorded_at, so a back-dated entry comes back where it was recorded; rows recorded by
    # this import (no recorded_at) are recorded now, in occurred_at order.
    if (recorded_us == recorded_us[0]).all():
        order = np.argsort(occurred_us, kind="stable")
    else:
        order = np.lexsort((occurred_us, recorded_us))  # stable: ties keep file order
    order = order[keep[order]]
    if len(order) == 0:
        return result
    df = frame.iloc[order].reset_index(drop=True)
    df["_row"] = order
    df["_q"] = qty[order]
    df["_occ"] = occurred_us[order]
    df["_rec"] = recorded_us[order]
    df["_day"] = df["_occ"].to_numpy().astype("datetime64[us]").astype("datetime64[D]").astype(str)
    df["_fid"] = lookup(df["facility_code"], facilities)
    df["_iid"] = lookup(df["item_code"], {code: v[0] for code, v in items.items()})
    heads = _lock_heads(session, sorted(int(f) for f in df["_fid"].unique()))
    lots, balances = _stored_lots_and_balances(session)
    plan = _simulate_fast(df, lots, balances)
    if plan is None:
        # Something would be refused (or the fast pass cannot be sure): the exact loop names it.
        plan = _simulate(sheet, df, lots, balances)
    _check_reverses(session, sheet, df, plan.effect)
    if sheet.problems:
        raise ImportFailed(sheet.problems)
    _write(session, df, plan, heads, facilities, now, progress, result)
    return result

