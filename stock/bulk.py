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
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.orm import Session

from stock import chain
from stock.csvread import (
    ImportFailed,
    Sheet,
    check_domain,
    check_length,
    parse_dates,
    parse_quantities,
    parse_timestamps,
)
from stock.ledger import ADDS, NEEDS_REASON, SUBTRACTS, TRANSFERS
from stock.models import ENTRY_KINDS, Balance, ChainHead, Facility, Item, Lot, Patient
from stock.quantities import DIVISIBLE_UNITS, from_milli

LEDGER_COLUMNS = {
    "entry_id": True, "occurred_at": True, "facility_code": True, "kind": True, "item_code": True,
    "lot_number": False, "expiry_date": False, "quantity": True, "health_card_id": False,
    "prescription_id": False, "counterparty_code": False, "reason": False, "recorded_by": True,
    "document_number": False, "reverses": False,
}
# What makes two rows with one entry_id "the same content" (expiry belongs to the lot).
CONTENT = ("kind", "facility_code", "item_code", "lot_number", "quantity", "occurred_at",
           "recorded_by", "health_card_id", "prescription_id", "counterparty_code", "reason",
           "document_number", "reverses")
INSERT_COLUMNS = ("entry_id", "facility_id", "chain_seq", "chain_hash", "kind", "item_id", "lot_id",
                  "quantity", "effect", "book_quantity", "occurred_at", "recorded_at", "recorded_by",
                  "patient_id", "prescription_ref", "counterparty", "counterparty_facility_id",
                  "reason", "document_number", "reverses")
NEW_LOT_KINDS = ("receipt", "transfer_in", "count")
REPORT_EVERY = 50_000


@dataclass
class BulkResult:
    added: int = 0
    already_present: int = 0
    unregistered_patients: int = 0


@dataclass
class PatientIds:
    ids: dict[str, int]
    created: int


def patient_ids(session: Session, cards: list[str]) -> PatientIds:
    """Ids of the patients holding ``cards``; a card not in the register becomes an unregistered
    patient (the evidence a ghost-patient detector needs), never an error."""
    wanted = {c for c in cards if c}
    ids = dict(session.execute(select(Patient.health_card_id, Patient.id)).all())
    missing = sorted(wanted - set(ids))
    if missing:
        session.execute(insert(Patient), [{"health_card_id": c, "registered": False} for c in missing])
        ids = dict(session.execute(select(Patient.health_card_id, Patient.id)).all())
    return PatientIds(ids, len(missing))


def _us(ts: pd.Series) -> np.ndarray:
    return ts.to_numpy(dtype="datetime64[us]").astype("int64")


def _content_key(cols: dict[str, list], i: int) -> tuple:
    return tuple(cols[c][i] for c in CONTENT)


def _validate_shape(sheet: Sheet, facilities: dict[str, int], items: dict[str, tuple[int, str]]):
    """Column-wise checks: presence, domain, sign, references. Returns parsed columns."""
    sheet.require("entry_id", "occurred_at", "facility_code", "kind", "item_code", "quantity",
                  "recorded_by")
    check_domain(sheet, "kind", ENTRY_KINDS)
    for c in ("entry_id", "lot_number", "health_card_id", "prescription_id", "document_number",
              "reverses", "recorded_by"):
        check_length(sheet, c, 64)
    ts = parse_timestamps(sheet, "occurred_at")
    expiry = parse_dates(sheet, "expiry_date")
    qty, has_qty = parse_quantities(sheet, "quantity")
    kind = sheet.col("kind")
    is_adj, is_count = (kind == "adjustment").to_numpy(), (kind == "count").to_numpy()
    other = kind.isin(ADDS + SUBTRACTS).to_numpy()
    sheet.report(has_qty & is_adj & (qty == 0), "quantity", "an adjustment's quantity must be non-zero (signed)")
    sheet.report(has_qty & is_count & (qty < 0), "quantity", "a count's quantity (counted) cannot be negative")
    sheet.report(has_qty & other & (qty <= 0), "quantity",
                 lambda i: f"a {kind.iat[i]}'s quantity must be greater than zero ({sheet.col('quantity').iat[i]})")
    card, cp, reason = sheet.col("health_card_id"), sheet.col("counterparty_code"), sheet.col("reason")
    sheet.report((kind == "dispense") & (card == ""), "health_card_id", "a dispense needs the patient's health_card_id")
    sheet.report(kind.isin(TRANSFERS) & (cp == ""), "counterparty_code",
                 lambda i: f"a {kind.iat[i]} needs the other facility's code")
    sheet.report(kind.isin(NEEDS_REASON) & (reason == ""), "reason", lambda i: f"a {kind.iat[i]} needs a reason")
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
               progress: Callable[[str, int, int], None] | None = None) -> BulkResult:
    """Validate and write the ledger rows of ``sheet`` in the caller's transaction.

    Raises ImportFailed naming every bad row; the caller rolls back.
    """
    progress = progress or (lambda phase, done, total: None)
    if sheet.problems:
        raise ImportFailed(sheet.problems)
    frame = sheet.frame
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

    occurred_us = _us(ts)
    cols = {c: sheet.col(c).tolist() for c in LEDGER_COLUMNS}
    cols["quantity"] = qty.tolist()
    cols["occurred_at"] = occurred_us.tolist()
    entry_ids = cols["entry_id"]

    # Idempotency: rows already stored (or repeated in the file) are skipped when identical and
    # refused when not.
    keep = np.ones(n, dtype=bool)
    dup = frame["entry_id"].duplicated(keep="first").to_numpy()
    if dup.any():
        first: dict[str, int] = {}
        for i, eid in enumerate(entry_ids):
            if eid in first:
                j = first[eid]
                if _content_key(cols, i) != _content_key(cols, j):
                    sheet.report_row(i, "entry_id",
                                 f"entry {eid} already appears on line {j + 2} with different content")
                keep[i] = False
            else:
                first[eid] = i
    stored = _stored_content(session, [e for e, k in zip(entry_ids, keep) if k])
    if stored:
        for i, eid in enumerate(entry_ids):
            if keep[i] and eid in stored:
                keep[i] = False
                mine, theirs = _content_key(cols, i), stored[eid]
                if mine != theirs:
                    diffs = [f"{c}: stored {a!r}, now {b!r}" for c, a, b in zip(CONTENT, theirs, mine) if a != b]
                    sheet.report_row(i, "entry_id",
                                 f"entry {eid} was already recorded with different content ({'; '.join(diffs)})")
                else:
                    result.already_present += 1
    if sheet.problems:
        raise ImportFailed(sheet.problems)

    # Apply in occurred_at order, ties in file order.
    order = np.argsort(occurred_us, kind="stable")
    order = order[keep[order]]
    if len(order) == 0:
        return result
    fac_ids = [facilities[c] for c in cols["facility_code"]]
    touched = sorted({fac_ids[i] for i in order})
    heads = _lock_heads(session, touched)
    plan = _simulate(session, sheet, cols, order, expiry, fac_ids, items, facilities)
    if sheet.problems:
        raise ImportFailed(sheet.problems)

    _write(session, sheet, cols, order, plan, heads, fac_ids, items, facilities, now, progress, result)
    return result


def _stored_content(session: Session, entry_ids: list[str]) -> dict[str, tuple]:
    """Content of already-stored entries among ``entry_ids``, in CONTENT order."""
    from stock.models import LedgerEntry

    all_ids = set(session.scalars(select(LedgerEntry.entry_id)))
    hits = [e for e in entry_ids if e in all_ids]
    out: dict[str, tuple] = {}
    sql = text(
        "SELECT e.entry_id, e.kind, f.code, i.code, l.lot_number, e.quantity, e.occurred_at, "
        "e.recorded_by, p.health_card_id, e.prescription_ref, e.counterparty, e.reason, "
        "e.document_number, e.reverses FROM ledger_entry e JOIN facility f ON f.id = e.facility_id "
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
    effect: list[int]
    book: list[int | None]
    lot_of: list[object]             # per row: (item_id, lot_number)
    lots: dict[tuple, list]          # (item_id, lot_number) -> [lot_id or None, expiry date or None]
    balances: dict[tuple, int]       # (facility_id, lot key) -> on hand (thousandths), final
    existing_balance: set[tuple]


def _simulate(session, sheet, cols, order, expiry, fac_ids, items, facilities) -> _Plan:
    """One pass in application order: lots, effects, counts, and the never-below-zero rule."""
    n = len(fac_ids)
    lots: dict[tuple, list] = {
        (item_id, lot_number): [lot_id, exp]
        for lot_id, item_id, lot_number, exp in session.execute(
            select(Lot.id, Lot.item_id, Lot.lot_number, Lot.expiry_date))
    }
    lot_ids = {v[0]: k for k, v in lots.items()}
    balances: dict[tuple, int] = {}
    for fid, lot_id, on_hand in session.execute(text("SELECT facility_id, lot_id, on_hand FROM balance")):
        balances[(fid, lot_ids[lot_id])] = int(on_hand)
    existing_balance = set(balances)
    exp_dates = [None if pd.isna(v) else v.date() for v in expiry]
    kinds, qty, lot_numbers, item_codes = cols["kind"], cols["quantity"], cols["lot_number"], cols["item_code"]
    effect: list[int] = [0] * n
    book: list[int | None] = [None] * n
    lot_of: list[object] = [None] * n
    adds, subs = set(ADDS), set(SUBTRACTS)
    for i in order:
        i = int(i)
        kind = kinds[i]
        item_id = items[item_codes[i]][0]
        key = (item_id, lot_numbers[i])
        lot = lots.get(key)
        exp = exp_dates[i]
        if lot is None:
            if kind not in NEW_LOT_KINDS:
                sheet.report_row(i, "lot_number",
                             f"{item_codes[i]} has no lot {lot_numbers[i]!r}: a lot enters by a receipt or transfer_in")
                continue
            if lot_numbers[i] and exp is None and kind != "count":
                sheet.report_row(i, "expiry_date",
                             f"expiry_date is required on the {kind} of new lot {lot_numbers[i]} of {item_codes[i]}")
                continue
            lot = lots[key] = [None, exp]
        elif exp is not None and lot[1] is not None and lot[1] != exp:
            sheet.report_row(i, "expiry_date",
                         f"lot {lot_numbers[i]} of {item_codes[i]} expires on {lot[1]}, not {exp}")
            continue
        lot_of[i] = key
        bkey = (fac_ids[i], key)
        on_hand = balances.get(bkey, 0)
        q = qty[i]
        if kind in adds or kind == "adjustment":
            eff = q
        elif kind in subs:
            eff = -q
        else:
            eff = q - on_hand
            book[i] = on_hand
        if on_hand + eff < 0:
            sheet.report_row(i, "quantity",
                         f"insufficient stock of {item_codes[i]} "
                         f"{'lot ' + lot_numbers[i] if lot_numbers[i] else 'the untracked lot'} at "
                         f"{cols['facility_code'][i]}: on hand {from_milli(on_hand)}, asked {from_milli(-eff)}")
            continue
        balances[bkey] = on_hand + eff
        effect[i] = eff
    _check_reverses(session, sheet, cols, order)
    return _Plan(effect, book, lot_of, lots, balances, existing_balance)


def _check_reverses(session, sheet, cols, order) -> None:
    from stock.models import LedgerEntry

    rev = cols["reverses"]
    wanted = {r for r in rev if r}
    if not wanted:
        return
    n = len(rev)
    known = set()
    taken = set()
    for start, chunk in ((s, sorted(wanted)[s:s + 500]) for s in range(0, len(wanted), 500)):
        known |= set(session.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.entry_id.in_(chunk))))
        taken |= set(session.scalars(select(LedgerEntry.reverses).where(LedgerEntry.reverses.in_(chunk))))
    seen = set()
    for i in order:
        i = int(i)
        target = rev[i]
        if target:
            if target not in known and target not in seen:
                sheet.report_row(i, "reverses",
                             f"reverses names entry {target!r}, which is not recorded before this one")
            elif target in taken:
                sheet.report_row(i, "reverses", f"entry {target} is already reversed")
            taken.add(target)
        seen.add(cols["entry_id"][i])


def _write(session, sheet, cols, order, plan: _Plan, heads, fac_ids, items, facilities, now,
           progress, result: BulkResult) -> None:
    m = len(order)
    # New lots first, so entries can reference them.
    new_lots = [(k, v) for k, v in plan.lots.items() if v[0] is None]
    if new_lots:
        session.execute(insert(Lot), [{"item_id": k[0], "lot_number": k[1], "expiry_date": v[1]} for k, v in new_lots])
        for lot_id, item_id, lot_number in session.execute(select(Lot.id, Lot.item_id, Lot.lot_number)):
            if (item_id, lot_number) in plan.lots:
                plan.lots[(item_id, lot_number)][0] = lot_id
    patients = patient_ids(session, [cols["health_card_id"][int(i)] for i in order])
    result.unregistered_patients = patients.created

    dialect = session.get_bind().dialect.name
    occ = np.asarray(cols["occurred_at"], dtype="int64").astype("datetime64[us]")
    occ_text = np.datetime_as_string(occ, unit="us")
    rec_dt = np.datetime64(now.astimezone(timezone.utc).replace(tzinfo=None), "us")
    rec_text = np.datetime_as_string(rec_dt, unit="us")
    if dialect == "sqlite":
        occ_text = np.char.replace(occ_text, "T", " ")
        rec_text = rec_text.replace("T", " ")
    else:
        occ_text = np.char.add(occ_text, "+00:00")
        rec_text = rec_text + "+00:00"
    recorded_us = str(chain.epoch_us(now))
    code_of_fac = {v: k for k, v in facilities.items()}
    rows = []
    c = cols
    for done, i in enumerate(order):
        i = int(i)
        fid = fac_ids[i]
        head = heads[fid]
        seq = head[0] + 1
        key = plan.lot_of[i]
        lot_id, lot_exp = plan.lots[key]
        card = c["health_card_id"][i]
        book = plan.book[i]
        eff = plan.effect[i]
        q = c["quantity"][i]
        cp = c["counterparty_code"][i]
        texts = [code_of_fac[fid], str(seq), c["entry_id"][i], c["kind"][i], c["item_code"][i], key[1],
                 lot_exp.isoformat() if lot_exp else "", str(q), str(eff),
                 "" if book is None else str(book), str(c["occurred_at"][i]), recorded_us,
                 c["recorded_by"][i], card, c["prescription_id"][i], cp, c["reason"][i],
                 c["document_number"][i], c["reverses"][i]]
        h = chain.link_text(head[1], texts)
        head[0], head[1] = seq, h
        kind = c["kind"][i]
        rows.append((
            c["entry_id"][i], fid, seq, h, kind, items[c["item_code"][i]][0], lot_id, q, eff, book,
            str(occ_text[i]), rec_text, c["recorded_by"][i], patients.ids[card] if card else None,
            c["prescription_id"][i] or None, cp or None,
            facilities.get(cp) if cp and (kind in TRANSFERS or kind == "receipt") else None,
            c["reason"][i] or None, c["document_number"][i] or None, c["reverses"][i] or None,
        ))
        if done % REPORT_EVERY == 0:
            progress("hashing", done, m)
    progress("hashing", m, m)
    _insert_rows(session, dialect, rows, progress)
    result.added = len(rows)

    # Balances and chain heads, in the same transaction.
    upd, new = [], []
    for (fid, key), on_hand in plan.balances.items():
        lot_id = plan.lots[key][0]
        if (fid, key) in plan.existing_balance:
            upd.append({"f": fid, "l": lot_id, "v": on_hand})
        else:
            new.append({"facility_id": fid, "lot_id": lot_id, "item_id": key[0], "on_hand": from_milli(on_hand)})
    if upd:
        session.execute(text("UPDATE balance SET on_hand = :v WHERE facility_id = :f AND lot_id = :l"), upd)
    if new:
        session.execute(insert(Balance), new)
    session.execute(text("UPDATE chain_head SET length = :len, head_hash = :hash WHERE facility_id = :fid"),
                    [{"fid": fid, "len": length, "hash": h} for fid, (length, h) in heads.items()])
    # Rows were written beneath the ORM: objects it may hold for them are stale now.
    session.expire_all()


def _insert_rows(session: Session, dialect: str, rows: list[tuple], progress) -> None:
    raw = session.connection().connection.driver_connection
    cols = ", ".join(INSERT_COLUMNS)
    m = len(rows)
    if dialect == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY ledger_entry ({cols}) FROM STDIN") as copy:
            for done, row in enumerate(rows):
                copy.write_row(row)
                if done % REPORT_EVERY == 0:
                    progress("writing", done, m)
    else:
        sql = f"INSERT INTO ledger_entry ({cols}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"
        cur = raw.cursor()
        for start in range(0, m, REPORT_EVERY):
            cur.executemany(sql, rows[start:start + REPORT_EVERY])
            progress("writing", start, m)
        cur.close()
    progress("writing", m, m)
