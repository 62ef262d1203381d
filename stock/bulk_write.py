"""The bulk import's writing: each row's canonical text and hash (built from
stock.canonical.FIELDS), and the rows, balances and chain heads written through the driver."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from itertools import islice, repeat
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from stock import canonical
from stock.bulk_db import _driver, ids_or_none, insert_sql, null_value, nulls, patient_ids
from stock.bulk_plan import _groups, _Plan
from stock.models import Lot

if TYPE_CHECKING:
    from stock.bulk import BulkResult


INSERT_COLUMNS = ("entry_id", "facility_id", "chain_seq", "chain_hash", "kind", "item_id", "lot_id",
                  "quantity", "effect", "book_quantity", "occurred_at", "recorded_at", "recorded_by",
                  "patient_id", "prescription_ref", "counterparty", "counterparty_facility_id",
                  "reason", "document_number", "reverses", "serial_number")


REPORT_EVERY = 50_000
BULK_INDEX_THRESHOLD = 50_000
"""Rows from which an import into SQLite rebuilds the ledger's lookup indexes instead of updating them."""


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

