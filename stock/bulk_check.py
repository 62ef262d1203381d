"""The bulk import's checks: the rule book's shape of an entry over whole columns, the time rule,
idempotency against what is stored, and the reversal rule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from stock import chain
from stock import gs1
from stock import rules
from stock.csvread import (
    Sheet,
    check_characters,
    check_domain,
    check_length,
    parse_dates,
    parse_quantities,
    parse_timestamps,
)
from stock.ledger import serial_problem
from stock.models import ENTRY_KINDS
from stock.quantities import SCALE, from_milli
from stock.rules import NEEDS_REASON, TRANSFERS


LEDGER_COLUMNS = {
    "entry_id": True, "occurred_at": True, "facility_code": True, "kind": True, "item_code": True,
    "lot_number": False, "expiry_date": False, "quantity": True, "health_card_id": False,
    "prescription_id": False, "counterparty_code": False, "reason": False, "recorded_by": True,
    "document_number": False, "reverses": False, "serial_number": False,
    "recorded_at": False,
}


CONTENT = rules.CONTENT


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
    sheet.report(rules.transfers_to_itself(transfer, fac, cp), "counterparty_code", rules.MSG_TRANSFER_TO_ITSELF)
    divisible = {code for code, (_id, unit) in items.items() if rules.divisible(unit)}
    sheet.report(has_qty & (qty % SCALE != 0) & ~item.isin(divisible) & item.isin(items.keys()), "quantity",
                 lambda i: rules.whole_units_problem(items[item.iat[i]][1], from_milli(int(qty[i])), item.iat[i],
                                                     shown=sheet.col("quantity").iat[i]).message)
    return ts, expiry, qty


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

