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
import hashlib
from datetime import date, datetime, timedelta, timezone
from itertools import islice, repeat
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.orm import Session

from stock import canonical, chain
from stock.csvread import (
    ImportFailed,
    Sheet,
    check_characters,
    check_domain,
    check_length,
    parse_dates,
    parse_quantities,
    parse_timestamps,
)
from stock import gs1
from stock import rules
from stock.errors import EntryConflict
from stock.ledger import serial_problem
from stock.rules import NEEDS_REASON, SUBTRACTS, TRANSFERS
from stock.models import ENTRY_KINDS, Base, ChainHead, Facility, Item, Lot
from stock.quantities import DIVISIBLE_UNITS, from_milli

LEDGER_COLUMNS = {
    "entry_id": True, "occurred_at": True, "facility_code": True, "kind": True, "item_code": True,
    "lot_number": False, "expiry_date": False, "quantity": True, "health_card_id": False,
    "prescription_id": False, "counterparty_code": False, "reason": False, "recorded_by": True,
    "document_number": False, "reverses": False, "serial_number": False,
    "recorded_at": False,
}
CONTENT = rules.CONTENT
INSERT_COLUMNS = ("entry_id", "facility_id", "chain_seq", "chain_hash", "kind", "item_id", "lot_id",
                  "quantity", "effect", "book_quantity", "occurred_at", "recorded_at", "recorded_by",
                  "patient_id", "prescription_ref", "counterparty", "counterparty_facility_id",
                  "reason", "document_number", "reverses", "serial_number")
REPORT_EVERY = 50_000
BULK_INDEX_THRESHOLD = 50_000
"""Rows from which an import into SQLite rebuilds the ledger's lookup indexes instead of updating them."""


@dataclass
class BulkResult:
    added: int = 0
    already_present: int = 0
    unregistered_patients: int = 0


@dataclass
class PatientIds:
    ids: dict[str, int]
    created: int


def _driver(session: Session):
    """The driver's own connection and its placeholder: bulk reads and writes skip the ORM."""
    raw = session.connection().connection.driver_connection
    return raw, "?" if session.get_bind().dialect.name == "sqlite" else "%s"



def lookup(values: pd.Series, mapping: dict, missing: int = -1) -> np.ndarray:
    """``mapping[v]`` for each value (int64; ``missing`` where absent), one dict lookup per
    distinct value: Series.map on text goes row by row through Python."""
    codes, uniques = pd.factorize(values)
    # Iterating an Arrow-backed Index goes value by value through pandas: make it a list first.
    table = np.fromiter((mapping.get(u, missing) for u in uniques.tolist()), dtype="int64", count=len(uniques))
    return np.append(table, missing)[codes]  # code -1 (a missing value) takes the last slot


def ids_or_none(values: pd.Series, mapping: dict, missing: str | None = None) -> list:
    """``mapping[v]`` as a Python int, or ``missing`` where the value is '' or not in ``mapping``."""
    ids = lookup(values, mapping)
    out = ids.astype(object)
    out[(ids == -1) | (values == "").to_numpy()] = missing
    return out.tolist()


def patient_ids(session: Session, cards: list[str]) -> PatientIds:
    """Ids of the patients holding ``cards``; a card not in the register becomes an unregistered
    patient (the evidence a ghost-patient detector needs), never an error."""
    session.flush()
    raw, ph = _driver(session)
    wanted = {c for c in cards if c}
    cur = raw.cursor()
    try:
        cur.execute("SELECT health_card_id, id FROM patient")
        ids = dict(cur.fetchall())
        missing = sorted(wanted - ids.keys())
        if missing:
            newest = max(ids.values(), default=0)
            cur.executemany(f"INSERT INTO patient (health_card_id, registered) VALUES ({ph}, {ph})",
                            [(c, db_bool(session, False)) for c in missing])
            # Ids only grow: the rows just added are the ones above the newest seen.
            cur.execute(f"SELECT health_card_id, id FROM patient WHERE id > {ph}", (newest,))
            ids.update(cur.fetchall())
    finally:
        cur.close()
    return PatientIds(ids, len(missing))


def null_value(session: Session) -> str | None:
    """What a bulk write hands the driver for SQL NULL.

    On SQLite it is '', which the INSERT turns back into NULL (see ``insert_sql``): the sqlite3
    module binds a str directly but sends None through its adapter lookup, which cost more than
    all the rest of binding a ledger row (about 4 s of 9 s for a million rows). On PostgreSQL
    (COPY, executemany) it is None."""
    return "" if session.get_bind().dialect.name == "sqlite" else None


def nulls(values: list, nul: str | None) -> list:
    """Cells with '' (or None) as ``nul``: what a bulk write hands the driver for an empty cell."""
    return values if nul == "" else [v or nul for v in values]


def _params(session: Session, table: str, columns: tuple[str, ...]) -> list[str]:
    """The driver's parameter for each of ``columns``. On SQLite a column the schema lets be NULL
    takes NULLIF(?, ''), so that '' (``null_value``) stores NULL."""
    if session.get_bind().dialect.name != "sqlite":
        return ["%s"] * len(columns)
    schema = Base.metadata.tables[table].c
    return ["NULLIF(?, '')" if schema[c].nullable else "?" for c in columns]


def insert_sql(session: Session, table: str, columns: tuple[str, ...]) -> str:
    """An INSERT of ``columns`` for the driver's executemany, ``null_value`` meaning NULL."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(_params(session, table, columns))})"


def upsert_rows(session: Session, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
    """Insert or update master-data rows through the driver: ``rows[i][0]`` is the natural key
    (the first of ``columns``). A row equal to what is stored is left alone, so re-importing the
    same file writes nothing. Values must be as the driver stores and returns them (see
    ``db_dates`` and ``db_bool``), with ``null_value`` for NULL. Returns how many rows were
    inserted or changed."""
    session.flush()
    raw, ph = _driver(session)
    params = _params(session, table, columns)
    # Stored NULLs read back as '' where '' stands for NULL, so that a row compares equal to what
    # it would store.
    read = [f"IFNULL({c}, '')" if p.startswith("NULLIF") else c for c, p in zip(columns, params)]
    cur = raw.cursor()
    try:
        cur.execute(f"SELECT {', '.join(read)}, id FROM {table}")
        stored = {r[0]: r for r in cur.fetchall()}
        new, changed = [], []
        for r in rows:
            old = stored.get(r[0])
            if old is None:
                new.append(r)
            elif tuple(old[:-1]) != r:
                changed.append((*r[1:], old[-1]))
        if new:
            cur.executemany(insert_sql(session, table, columns), new)
        if changed:
            sets = ", ".join(f"{c} = {p}" for c, p in zip(columns[1:], params[1:]))
            cur.executemany(f"UPDATE {table} SET {sets} WHERE id = {ph}", changed)
    finally:
        cur.close()
    session.expire_all()
    return len(new) + len(changed)


def db_dates(session: Session, values: list[str]) -> list:
    """Contract dates (validated 'YYYY-MM-DD' text, or '') as the driver is handed them: SQLite
    stores the text itself ('' stands for none, see ``null_value``); PostgreSQL takes dates."""
    if session.get_bind().dialect.name == "sqlite":
        return values
    return [date.fromisoformat(v) if v else None for v in values]


def db_bool(session: Session, value: bool) -> bool | int:
    """A boolean as the driver is handed it: SQLite stores 0 and 1, and the sqlite3 module binds
    an int directly but sends a bool through its adapter lookup (see ``null_value``)."""
    return int(value) if session.get_bind().dialect.name == "sqlite" else value


def _content_key(cols: dict[str, list], i: int) -> tuple:
    return tuple(cols[c][i] for c in CONTENT)


def _validate_shape(sheet: Sheet, facilities: dict[str, int], items: dict[str, tuple[int, str]]):
    """Column-wise checks: presence, domain, sign, references. Returns parsed columns."""
    # The rule book's shape of an entry (stock.rules), executed column-wise.
    sheet.require(*rules.REQUIRED)
    check_domain(sheet, "kind", ENTRY_KINDS)
    for c in rules.LIMITED:
        check_length(sheet, c, rules.MAX_TEXT)
    for c in LEDGER_COLUMNS:
        check_characters(sheet, c, chain.REFUSED, chain.refused_character)
    serial = sheet.col("serial_number")
    if (serial != "").any():
        sheet.report((serial != "") & ~serial.str.fullmatch(gs1.SERIAL_PATTERN).fillna(False), "serial_number",
                     lambda i: serial_problem(serial.iat[i]) or "not a GS1 serial number")
    check_length(sheet, "reason", rules.MAX_REASON)
    occurred = sheet.col("occurred_at")
    year = pd.to_numeric(occurred.str[:4], errors="coerce")
    first, end = rules.EARLIEST_OCCURRED.year, rules.LATEST_OCCURRED.year
    sheet.report(((year < first) | (year >= end)).to_numpy(), "occurred_at",
                 lambda i: f"{occurred.iat[i]!r} is outside {first}-{end - 1}")
    ts = parse_timestamps(sheet, "occurred_at")
    expiry = parse_dates(sheet, "expiry_date")
    qty, has_qty = parse_quantities(sheet, "quantity")
    kind, typed = sheet.col("kind"), sheet.col("quantity")
    blank = {}  # field -> rows where it is empty (or only spaces)
    for k in ENTRY_KINDS:
        is_k = (kind == k).to_numpy()
        if not is_k.any():
            continue
        sheet.report(has_qty & is_k & ~rules.sign_allows(k, qty), "quantity",
                     lambda i, k=k: rules.sign_problem(k, int(qty[i]), shown=typed.iat[i]).message)
        for name in rules.KIND_NEEDS.get(k, ()):
            if name not in blank:
                blank[name] = (sheet.col(name).str.strip() == "").to_numpy()
            sheet.report(is_k & blank[name], name, rules.NEEDS_WORDS[name] % {"kind": k})
        for name in rules.KIND_FORBIDS.get(k, ()):
            sheet.report(is_k & (sheet.col(name) != "").to_numpy(), name,
                         rules.MSG_FORBIDDEN % {"kind": k, "name": name})
    reason = sheet.col("reason")
    sheet.report((sheet.col("reverses") != "") & (reason.str.strip() == "") & ~kind.isin(NEEDS_REASON), "reason",
                 rules.MSG_REVERSAL_REASON)
    cp = sheet.col("counterparty_code")
    fac, item = sheet.col("facility_code"), sheet.col("item_code")
    sheet.report((fac != "") & ~fac.isin(facilities.keys()), "facility_code",
                 lambda i: f"unknown facility {fac.iat[i]!r}")
    sheet.report((item != "") & ~item.isin(items.keys()), "item_code", lambda i: f"unknown item {item.iat[i]!r}")
    transfer = kind.isin(TRANSFERS)
    sheet.report(transfer & (cp != "") & ~cp.isin(facilities.keys()), "counterparty_code",
                 lambda i: f"unknown facility {cp.iat[i]!r}")
    sheet.report(transfer & (cp != "") & (cp == fac), "counterparty_code",
                 "a transfer's counterparty must be another facility")
    divisible = {code for code, (_id, unit) in items.items() if unit.strip().lower() in DIVISIBLE_UNITS}
    sheet.report(has_qty & (qty % 1000 != 0) & ~item.isin(divisible) & item.isin(items.keys()), "quantity",
                 lambda i: f"{sheet.col('quantity').iat[i]} is not a whole number of {items[item.iat[i]][1]}s")
    return ts, expiry, qty


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


def _check_times(sheet: Sheet, occurred_us: np.ndarray, recorded_us: np.ndarray, new: np.ndarray,
                 catch_up: timedelta | None) -> None:
    """The rule book's time rule over the rows to be added (``new``), column-wise; each row it
    refuses is worded by the row-wise rule itself."""
    suspect = new & (rules.future_mask(occurred_us, recorded_us) | rules.late_mask(occurred_us, recorded_us, catch_up))
    if not suspect.any():
        return
    typed, reason = sheet.col("occurred_at"), sheet.col("reason")
    for i in np.flatnonzero(suspect).tolist():
        recorded = datetime.fromtimestamp(int(recorded_us[i]) / 1_000_000, timezone.utc).isoformat()
        problem = rules.time_problem(int(occurred_us[i]), int(recorded_us[i]), reason.iat[i], catch_up,
                                     occurred=typed.iat[i], recorded=recorded)
        if problem is not None:
            sheet.report_row(i, problem.field, problem.message)


def _recorded_us(sheet: Sheet, now: datetime) -> np.ndarray:
    """When each row was recorded (epoch microseconds): its ``recorded_at`` when given (a data set
    exported from Dawa carries it, so a restore rebuilds the same hash chain), else ``now``. A
    recording time after ``now`` is refused: nothing can have been recorded in the future."""
    now_us = chain.epoch_us(now)
    given = (sheet.col("recorded_at") != "").to_numpy()
    if not given.any():
        return np.full(len(sheet.frame), now_us, dtype="int64")
    us = parse_timestamps(sheet, "recorded_at")
    sheet.report(given & (us > now_us), "recorded_at",
                 lambda i: f"{sheet.col('recorded_at').iat[i]} is after the time of this import")
    return np.where(given, us, now_us)


def _stored_content(session: Session, entry_ids: list[str]) -> dict[str, tuple]:
    """Content of the stored entries ``entry_ids``, in CONTENT order."""
    hits = entry_ids
    out: dict[str, tuple] = {}
    sql = text(
        "SELECT e.entry_id, e.kind, f.code, i.code, l.lot_number, e.quantity, e.occurred_at, "
        "e.recorded_by, p.health_card_id, e.prescription_ref, e.counterparty, e.reason, "
        "e.document_number, e.reverses, e.serial_number FROM ledger_entry e JOIN facility f ON f.id = e.facility_id "
        "JOIN item i ON i.id = e.item_id JOIN lot l ON l.id = e.lot_id "
        "LEFT JOIN patient p ON p.id = e.patient_id WHERE e.entry_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    for start in range(0, len(hits), 500):
        for row in session.execute(sql, {"ids": hits[start:start + 500]}):
            values = list(row[1:])
            values[4] = int(values[4])
            values[5] = chain._us(values[5])
            out[row[0]] = tuple("" if v is None else v for v in values)
    return out


def _all_entry_ids(raw) -> set[str]:
    cur = raw.cursor()
    try:
        cur.execute("SELECT entry_id FROM ledger_entry")
        return {e for (e,) in cur.fetchall()}
    finally:
        cur.close()


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


def _check_reverses(session: Session, sheet: Sheet, df: pd.DataFrame, effect) -> None:
    """The rule book's reversal rule for every row naming an entry in ``reverses``: its target
    recorded before it (stored, or earlier in this file's application order), no reversal itself,
    reversed once, and inverted exactly. ``effect``: each row's planned effect (thousandths)."""
    has = df["reverses"] != ""
    if not has.any():
        return
    wanted = sorted(set(df.loc[has, "reverses"]))
    targets: dict[str, rules.Movement] = {}
    taken: dict[str, str] = {}
    sql = text("SELECT e.entry_id, e.facility_id, e.item_id, l.lot_number, e.effect, e.reverses "
               "FROM ledger_entry e JOIN lot l ON l.id = e.lot_id WHERE e.entry_id IN :ids"
               ).bindparams(bindparam("ids", expanding=True))
    by_sql = text("SELECT reverses, entry_id FROM ledger_entry WHERE reverses IN :ids").bindparams(
        bindparam("ids", expanding=True))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for eid, fid, iid, lot, eff, rev in session.execute(sql, {"ids": chunk}):
            targets[eid] = rules.Movement(eid, fid, iid, lot, from_milli(int(eff)), rev)
        taken.update(session.execute(by_sql, {"ids": chunk}).all())
    # Where each reversed entry stands in this file's application order (entry ids are unique here):
    # one that comes later than its reversal is not "recorded before" it. Only the few rows that
    # reverse something, or are reversed, are visited one by one.
    ids = df["entry_id"]
    in_file = np.flatnonzero(ids.isin(wanted).to_numpy())
    position = dict(zip(ids.iloc[in_file].tolist(), in_file.tolist()))
    effect = np.asarray(effect)
    cols = [df[c].to_numpy()[in_file] for c in ("entry_id", "_fid", "_iid", "lot_number", "reverses")]
    here = {eid: rules.Movement(eid, int(fid), int(iid), lot, from_milli(int(effect[j])), rev or None)
            for j, eid, fid, iid, lot, rev in zip(in_file.tolist(), *cols)}
    at = np.flatnonzero(has.to_numpy())
    rows = zip(at.tolist(), *(df[c].to_numpy()[at].tolist() for c in
                              ("entry_id", "kind", "_fid", "_iid", "lot_number", "_q", "reverses", "_row")))
    for j, eid, kind, fid, iid, lot, q, target, row in rows:
        mine = rules.Movement(eid, int(fid), int(iid), lot, from_milli(rules.signed(kind, int(q))), target)
        found = targets.get(target)
        if found is None and position.get(target, j) < j:
            found = here[target]
        problem = rules.reversal_problem(mine, kind, found, taken.get(target))
        if problem is not None:
            sheet.report_row(row, problem.field, problem.message)
        else:
            taken[target] = eid


TEXT = pa.large_string()


def _arrow(values) -> pa.Array:
    """A column as one Arrow array (pandas' Arrow-backed text columns convert without a copy)."""
    arr = pa.array(values)
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr if arr.type == TEXT else arr.cast(TEXT)


def _ints_text(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype="int64")).cast(TEXT)


def _timestamps_text(us: np.ndarray, dialect: str) -> list[str]:
    """Timestamps as each database's driver stores them (SQLite: SQLAlchemy's naive UTC text,
    'YYYY-MM-DD HH:MM:SS.ffffff'; PostgreSQL: ISO 8601 with a +00:00 offset)."""
    text_ = pa.array(np.asarray(us, dtype="int64")).cast(pa.timestamp("us")).cast(pa.string())
    if dialect == "sqlite":
        return text_.to_pylist()
    return pc.binary_join_element_wise(pc.replace_substring(text_, " ", "T", max_replacements=1),
                                       "+00:00", "").to_pylist()


ARROW = {canonical.TEXT: _arrow, canonical.INT: _ints_text, canonical.DATE: _arrow, canonical.EPOCH_US: _ints_text}
"""Each canonical encoding (stock.canonical) over a whole column: text as it is ('' for none),
numbers and epoch microseconds as decimal text, dates as the ISO text they are kept in here."""


def canonical_texts(values: dict) -> list[str]:
    """Each row's canonical text, with the record mark and the version before it, built column-wise
    by Arrow from the declaration (stock.canonical.FIELDS). ``values`` maps each field's name to its
    column (numpy, pandas, or an Arrow text array already encoded, '' for none) or to one value for
    every row; an optional field is encoded only on the rows where it is not ''."""
    def encoded(f):
        v = values[f.name]
        if isinstance(v, (str, int)):
            return pa.scalar(v if isinstance(v, str) else str(v), TEXT)
        return v if isinstance(v, pa.Array) and v.type == TEXT else ARROW[f.encoding](v)

    prefix = pa.scalar(canonical.RECORD + canonical.VERSION, TEXT)
    sep = pa.scalar(canonical.SEP, TEXT)
    texts = pc.binary_join_element_wise(prefix, *(encoded(f) for f in canonical.REQUIRED), sep)
    for f in canonical.OPTIONAL:
        column = encoded(f)
        if isinstance(column, pa.Scalar) or not pc.any(pc.not_equal(column, "")).as_py():
            continue
        tail = pc.if_else(pc.equal(column, ""), pa.scalar("", TEXT),
                          pc.binary_join_element_wise(sep, column, pa.scalar("", TEXT)))
        texts = pc.binary_join_element_wise(texts, tail, pa.scalar("", TEXT))
    return texts.to_pylist()


def link_all(payload: list[str], fids: list[int], prev: dict[int, str]) -> list[str]:
    """The hash chain over rows in order: each row's hash covers the previous hash of its own
    facility's chain and its payload. ``prev`` (facility id -> head hash) is advanced in place."""
    sha = hashlib.sha256
    hashes = [""] * len(payload)
    for j, (fid, text_) in enumerate(zip(fids, payload)):
        prev[fid] = hashes[j] = sha((prev[fid] + text_).encode("utf-8")).hexdigest()
    return hashes


def _write(session: Session, df: pd.DataFrame, plan: _Plan, heads: dict[int, list], facilities: dict[str, int],
           now: datetime, progress, result: BulkResult) -> None:
    m = len(df)
    new_lots = [(k, v) for k, v in plan.lots.items() if v[0] is None]
    if new_lots:
        session.execute(insert(Lot), [{"item_id": k[0], "lot_number": k[1],
                                       "expiry_date": date.fromisoformat(v[1]) if v[1] else None}
                                      for k, v in new_lots])
        for lot_id, item_id, lot_number in session.execute(select(Lot.id, Lot.item_id, Lot.lot_number)):
            if (item_id, lot_number) in plan.lots:
                plan.lots[(item_id, lot_number)][0] = lot_id
    cards = df["health_card_id"]
    patients = patient_ids(session, cards[cards != ""].unique().tolist())
    result.unregistered_patients = patients.created

    # Per-row lot id and expiry, through each (item, lot) group.
    lcodes, lfirst = _groups(df, ["_iid", "lot_number"])
    iids_np, lotn_np = df["_iid"].to_numpy(), df["lot_number"].to_numpy(dtype=object)
    group_lots = [plan.lots[(int(iids_np[j]), lotn_np[j])] for j in lfirst]
    lot_ids = np.array([lot[0] for lot in group_lots], dtype="int64")[lcodes]
    lot_exp = pa.array([lot[1] for lot in group_lots], type=TEXT).take(pa.array(lcodes))
    start_len = df["_fid"].map({f: h[0] for f, h in heads.items()}).to_numpy()
    seq = df.groupby("_fid", sort=False).cumcount().to_numpy() + 1 + start_len
    is_count = (df["kind"] == "count").to_numpy()
    qty, eff = df["_q"].to_numpy(), np.asarray(plan.effect, dtype="int64")
    book_text = pc.if_else(pa.array(is_count), _ints_text(np.where(is_count, plan.book, 0).astype("int64")),
                           pa.scalar("", TEXT))
    rec = df["_rec"].to_numpy()
    one_time = bool((rec == rec[0]).all())  # the usual case: every row recorded now, by this import

    progress("hashing", 0, m)
    texts = canonical_texts({
        "facility_code": df["facility_code"], "chain_seq": seq, "entry_id": df["entry_id"], "kind": df["kind"],
        "item_code": df["item_code"], "lot_number": df["lot_number"], "expiry_date": lot_exp,
        "quantity_milli": qty, "effect_milli": eff, "book_milli": book_text, "occurred_us": df["_occ"].to_numpy(),
        "recorded_us": int(rec[0]) if one_time else rec, "recorded_by": df["recorded_by"],
        "health_card_id": df["health_card_id"], "prescription_ref": df["prescription_id"],
        "counterparty": df["counterparty_code"], "reason": df["reason"], "document_number": df["document_number"],
        "reverses": df["reverses"], "serial_number": df["serial_number"]})
    fids = df["_fid"].tolist()
    prev = {f: h[1] for f, h in heads.items()}
    hashes = link_all(texts, fids, prev)
    del texts
    progress("hashing", m, m)
    last = pd.Series(seq).groupby(df["_fid"].to_numpy()).max()
    for fid, sq in last.items():
        heads[int(fid)] = [int(sq), prev[int(fid)]]

    dialect = session.get_bind().dialect.name
    nul = null_value(session)
    cps = df["counterparty_code"]
    cp_ids = ids_or_none(cps, facilities, nul)
    patient_col = ids_or_none(cards, patients.ids, nul)
    book = np.where(is_count, plan.book, 0).astype("int64").tolist()
    book = [b if c else nul for b, c in zip(book, is_count.tolist())]
    rows = zip(
        df["entry_id"].tolist(), fids, seq.tolist(), hashes, df["kind"].tolist(), iids_np.tolist(),
        lot_ids.tolist(), qty.tolist(), eff.tolist(), book,
        _timestamps_text(df["_occ"].to_numpy(), dialect),
        repeat(_timestamps_text(rec[:1], dialect)[0], m) if one_time else _timestamps_text(rec, dialect),
        df["recorded_by"].tolist(),
        patient_col, nulls(df["prescription_id"].tolist(), nul),
        nulls(cps.tolist(), nul), cp_ids, nulls(df["reason"].tolist(), nul),
        nulls(df["document_number"].tolist(), nul),
        nulls(df["reverses"].tolist(), nul), nulls(df["serial_number"].tolist(), nul),
    )
    _insert_rows(session, dialect, rows, m, progress)
    result.added = m

    # Balances and chain heads, in the same transaction.
    # Through the driver: on_hand is stored as whole thousandths (stock.quantities.Quantity),
    # which the plan holds already; the ORM's bulk insert cost seconds for ~80,000 balances.
    upd, new = [], []
    for (fid, iid, ln), on_hand in plan.balances.items():
        lot_id = plan.lots[(iid, ln)][0]
        if (fid, iid, ln) in plan.existing_balance:
            upd.append((int(on_hand), fid, lot_id))
        else:
            new.append((fid, lot_id, iid, int(on_hand)))
    raw, ph = _driver(session)
    cur = raw.cursor()
    try:
        if upd:
            cur.executemany(f"UPDATE balance SET on_hand = {ph} WHERE facility_id = {ph} AND lot_id = {ph}", upd)
        if new:
            cur.executemany(f"INSERT INTO balance (facility_id, lot_id, item_id, on_hand) VALUES ({ph}, {ph}, {ph}, {ph})",
                            new)
    finally:
        cur.close()
    session.execute(text("UPDATE chain_head SET length = :len, head_hash = :hash WHERE facility_id = :fid"),
                    [{"fid": fid, "len": length, "hash": h} for fid, (length, h) in heads.items()])
    # Rows were written beneath the ORM: objects it may hold for them are stale now.
    session.expire_all()


def _insert_rows(session: Session, dialect: str, rows, m: int, progress) -> None:
    """Write ``m`` rows (an iterable of tuples in INSERT_COLUMNS order) through the driver."""
    raw = session.connection().connection.driver_connection
    cols = ", ".join(INSERT_COLUMNS)
    progress("writing", 0, m)
    if dialect == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY ledger_entry ({cols}) FROM STDIN") as copy:
            for done, row in enumerate(rows):
                copy.write_row(row)
                if done % REPORT_EVERY == 0:
                    progress("writing", done, m)
    else:
        sql = insert_sql(session, "ledger_entry", INSERT_COLUMNS)
        cur = raw.cursor()
        rebuild = _drop_lookup_indexes(cur, m)
        rows = iter(rows)
        for start in range(0, m, REPORT_EVERY):
            cur.executemany(sql, islice(rows, REPORT_EVERY))
            progress("writing", start, m)
        if rebuild:
            progress("indexing", 0, len(rebuild))
            for done, ddl in enumerate(rebuild):
                cur.execute(ddl)
                progress("indexing", done + 1, len(rebuild))
        cur.close()
    progress("writing", m, m)


def _drop_lookup_indexes(cur, adding: int) -> list[str]:
    """For a large SQLite import, drop the ledger's indexes and return the DDL to rebuild them:
    building an index by sorting once is several times cheaper than updating it row by row. This
    happens inside the import's transaction (SQLite DDL is transactional), so a failed import
    leaves them as they were.

    The unique indexes go too when foreign-key enforcement is off for this transaction (see
    stock.db.FOREIGN_KEYS_OFF): with it on, SQLite needs the index on entry_id to check each
    reversal. Rebuilding a unique index checks every row again, so a duplicate still fails the
    import."""
    existing = cur.execute("SELECT count(*) FROM ledger_entry").fetchone()[0]
    if adding < BULK_INDEX_THRESHOLD or adding < existing:
        return []
    keep_unique = cur.execute("PRAGMA foreign_keys").fetchone()[0]
    indexes = cur.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger_entry' "
        "AND sql IS NOT NULL AND (? = 0 OR sql NOT LIKE 'CREATE UNIQUE%')", (keep_unique,)).fetchall()
    for name, _sql in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    return [sql for _name, sql in indexes]
