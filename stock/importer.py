"""``dawa import``: a data set folder (or one workbook) in the contract's format, all or nothing.

Master data (facilities, items, patients, prescriptions) is validated and upserted first, then
ledger.csv goes through ``stock.bulk``, the bulk form of the write path. Every problem in every
file is collected and reported together; if there is any, the transaction is rolled back by the
caller and nothing is stored. A workbook's sheets (``stock.workbook``) are read into the same text
frames as the CSV files, so they meet the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import repeat
from pathlib import Path
from typing import Callable

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stock.db import FOREIGN_KEYS_OFF
from stock import bulk, chain, gs1, workbook
from stock import reports as stock_reports
from stock.csvread import (
    ImportFailed,
    Problem,
    Sheet,
    check_domain,
    check_length,
    check_unique,
    parse_dates,
    parse_ints,
    parse_quantities,
    read_sheet,
)
from stock.models import FACILITY_KINDS, SEXES, Facility, Item
from stock.quantities import from_milli

FACILITY_COLUMNS = {"code": True, "name": True, "region": True, "kind": True, "parent_code": False}
ITEM_COLUMNS = {"code": True, "name": True, "atc_code": False, "form": False, "unit": True,
                "controlled": True, "max_dispense_quantity": False, "gtin": False}
PATIENT_COLUMNS = {"health_card_id": True, "birth_year": False, "sex": False,
                   "home_facility_code": False, "deceased_on": False}
PRESCRIPTION_COLUMNS = {"prescription_id": True, "health_card_id": True, "facility_code": True,
                        "prescriber": True, "item_code": True, "quantity": True, "days_supply": True,
                        "issued_on": True, "diagnosis_code": False}
FILES = ("facilities.csv", "items.csv", "patients.csv", "prescriptions.csv", "ledger.csv",
         "stock_reports.csv")

Progress = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    facilities: int = 0
    items: int = 0
    patients: int = 0
    prescriptions: int = 0
    entries_added: int = 0
    entries_already_present: int = 0
    unregistered_patients: int = 0
    files: list[str] = field(default_factory=list)


def _optional_ints(s: pd.Series, nul: str | None) -> list:
    """Numbers (NaN where missing) as Python ints, ``nul`` where missing."""
    missing = s.isna().to_numpy()
    values = s.fillna(0).astype("int64").tolist()
    return [nul if m else v for v, m in zip(values, missing.tolist())] if missing.any() else values


def _codes(session: Session, model) -> dict[str, int]:
    return dict(session.execute(select(model.code, model.id)).all())


def import_dataset(session: Session, folder: Path, *, progress: Progress | None = None,
                   now: datetime | None = None, catch_up: timedelta | None = None) -> ImportReport:
    """Import every contract file present in ``folder`` (or every sheet of the workbook ``folder``
    names, ``BOOK.xlsx``) into the caller's transaction. ``catch_up``: the ledger's catch-up window
    (stock.rules); None, the default, lets a data set bring history of any age.

    Raises ImportFailed listing every problem; the caller then rolls back (nothing is stored).
    """
    folder = Path(folder)
    if not session.in_transaction():
        # A transaction the import starts runs without SQLite's row-by-row foreign-key checks: every
        # reference it writes is resolved against the database first (stock.db.FOREIGN_KEYS_OFF).
        # A transaction the caller has already begun is joined as it is.
        session.connection(execution_options={FOREIGN_KEYS_OFF: True})
    if workbook.is_workbook(folder):
        with workbook.Workbook(folder, FILES) as book:
            return _import(session, book.present(FILES), book.read, list(book.problems), folder,
                           progress=progress, now=now, catch_up=catch_up)
    if not folder.is_dir():
        raise ImportFailed([Problem(str(folder), 0, "", "not a folder")])
    present = [f for f in FILES if (folder / f).exists()]
    return _import(session, present, lambda f, columns: read_sheet(folder / f, columns), [], folder,
                   progress=progress, now=now, catch_up=catch_up)


def _import(session: Session, present: list[str], read: Callable[[str, dict], Sheet], problems: list[Problem],
            source: Path, *, progress: Progress | None, now: datetime | None,
            catch_up: timedelta | None = None) -> ImportReport:
    """``read(file, columns)`` gives the contract file ``file`` as a text Sheet, from a folder or a
    workbook alike."""
    progress = progress or (lambda phase, done, total: None)
    now = now or datetime.now(timezone.utc)
    if not present:
        raise ImportFailed(problems or [Problem(str(source), 0, "", f"no data set files found (expected some of {', '.join(FILES)})")])
    report = ImportReport(files=present)

    if "facilities.csv" in present:
        problems += _facilities(session, read("facilities.csv", FACILITY_COLUMNS), report)
    if "items.csv" in present:
        problems += _items(session, read("items.csv", ITEM_COLUMNS), report)
    if "patients.csv" in present:
        problems += _patients(session, read("patients.csv", PATIENT_COLUMNS), report)
    if "prescriptions.csv" in present:
        problems += _prescriptions(session, read("prescriptions.csv", PRESCRIPTION_COLUMNS), report)
    if problems:
        raise ImportFailed(problems)
    if "ledger.csv" in present:
        progress("reading ledger.csv", 0, 0)
        sheet = read("ledger.csv", bulk.LEDGER_COLUMNS)
        result = bulk.post_frame(session, sheet, now=now, progress=progress, catch_up=catch_up)
        report.entries_added = result.added
        report.entries_already_present = result.already_present
        report.unregistered_patients += result.unregistered_patients
    report.stock_reports = (stock_reports.import_sheet(session, read(stock_reports.FILE, stock_reports.COLUMNS),
                                                       now=now)
                            if stock_reports.FILE in present else stock_reports.ReportImport())
    return report


def _facilities(session: Session, sheet: Sheet, report: ImportReport) -> list[Problem]:
    if sheet.problems:
        return sheet.problems
    sheet.require("code", "name", "region", "kind")
    check_domain(sheet, "kind", FACILITY_KINDS)
    check_unique(sheet, "code")
    check_length(sheet, "code", 32)
    known = set(_codes(session, Facility)) | set(sheet.col("code"))
    parent = sheet.col("parent_code")
    sheet.report((parent != "") & ~parent.isin(known), "parent_code",
                 lambda i: f"unknown facility {parent.iat[i]!r}")
    sheet.report((parent != "") & (parent == sheet.col("code")), "parent_code", "a facility cannot supply itself")
    if sheet.problems:
        return sheet.problems
    session.flush()
    raw, ph = bulk._driver(session)
    cur = raw.cursor()
    try:
        cur.execute("SELECT code, id, name, region, kind, parent_id FROM facility")
        stored = {r[0]: r[1:] for r in cur.fetchall()}
        f = sheet.frame
        rows = list(zip(f["code"].tolist(), f["name"].tolist(), f["region"].tolist(), f["kind"].tolist()))
        new = [r for r in rows if r[0] not in stored]
        changed = [(*r[1:], stored[r[0]][0]) for r in rows if r[0] in stored and tuple(stored[r[0]][1:4]) != r[1:]]
        if new:
            cur.executemany(f"INSERT INTO facility (code, name, region, kind) VALUES ({ph}, {ph}, {ph}, {ph})", new)
            cur.execute("SELECT code, id FROM facility")
            ids = dict(cur.fetchall())
            cur.executemany(f"INSERT INTO chain_head (facility_id, length, head_hash) VALUES ({ph}, 0, {ph})",
                            [(ids[r[0]], chain.GENESIS) for r in new])
        else:
            ids = {code: v[0] for code, v in stored.items()}
        if changed:
            cur.executemany(f"UPDATE facility SET name = {ph}, region = {ph}, kind = {ph} WHERE id = {ph}", changed)
        parents = [(ids[p] if p else None, ids[c]) for c, p in zip(f["code"].tolist(), parent.tolist())
                   if c not in stored or stored[c][4] != (ids[p] if p else None)]
        if parents:
            cur.executemany(f"UPDATE facility SET parent_id = {ph} WHERE id = {ph}", parents)
    finally:
        cur.close()
    session.expire_all()
    report.facilities = len(f)
    return []


def _items(session: Session, sheet: Sheet, report: ImportReport) -> list[Problem]:
    if sheet.problems:
        return sheet.problems
    sheet.require("code", "name", "unit", "controlled")
    check_unique(sheet, "code")
    check_length(sheet, "code", 32)
    controlled = sheet.col("controlled").str.lower()
    sheet.report((controlled != "") & ~controlled.isin(("true", "false")), "controlled",
                 lambda i: f"{sheet.col('controlled').iat[i]!r} is not true or false")
    mdq, has_mdq = parse_quantities(sheet, "max_dispense_quantity")
    sheet.report(has_mdq & (mdq <= 0), "max_dispense_quantity", "must be greater than zero")
    gtins = _gtins(session, sheet)
    if sheet.problems:
        return sheet.problems
    existing = _codes(session, Item)
    f = sheet.frame
    # A GTIN may move from one item of the file to another: let go of the old ones first, so the
    # unique index never sees one GTIN on two items half-way through.
    # A file without the gtin column leaves stored GTINs as they are.
    has_gtin = "gtin" in f.columns
    moving = [existing[c] for c in f["code"] if c in existing]
    if has_gtin and moving:
        session.execute(update(Item).where(Item.id.in_(moving), Item.gtin.is_not(None)).values(gtin=None))
    for i, (code, name, unit, ctl, atc, form) in enumerate(zip(
            f["code"], f["name"], f["unit"], controlled, sheet.col("atc_code"), sheet.col("form"))):
        values = dict(name=name, unit=unit, controlled=ctl == "true", atc_code=atc or None,
                      form=form or None,
                      max_dispense_quantity=from_milli(int(mdq[i])) if has_mdq[i] else None)
        if has_gtin:
            values["gtin"] = gtins[i]
        if code in existing:
            session.execute(update(Item).where(Item.id == existing[code]).values(**values))
        else:
            session.add(Item(code=code, **values))
    session.flush()
    report.items = len(f)
    return []


def _gtins(session: Session, sheet: Sheet) -> list[str | None]:
    """Each row's GTIN as 14 digits (None where the cell is empty). A value that is not a GTIN,
    one with a wrong check digit, one given twice in the file (in any of its lengths) or one that
    belongs to a stored item the file does not list is a problem."""
    cells = sheet.col("gtin").tolist()
    codes = sheet.col("code").tolist()
    out: list[str | None] = []
    first: dict[str, int] = {}
    for i, value in enumerate(cells):
        if not value:
            out.append(None)
            continue
        problem = gs1.gtin_problem(value)
        if problem:
            sheet.report_row(i, "gtin", problem)
            out.append(None)
            continue
        gtin = value.zfill(14)
        if gtin in first:
            sheet.report_row(i, "gtin", f"GTIN {value} is already given on line {first[gtin] + 2}")
        first.setdefault(gtin, i)
        out.append(gtin)
    if first:
        listed = set(codes)
        for code, gtin in session.execute(select(Item.code, Item.gtin).where(Item.gtin.in_(list(first)))):
            if code not in listed:
                i = first[gtin]
                sheet.report_row(i, "gtin", f"GTIN {cells[i]} already belongs to item {code}")
    return out


def _patients(session: Session, sheet: Sheet, report: ImportReport) -> list[Problem]:
    if sheet.problems:
        return sheet.problems
    sheet.require("health_card_id")
    check_unique(sheet, "health_card_id")
    check_length(sheet, "health_card_id", 64)
    years = parse_ints(sheet, "birth_year", 1880, datetime.now(timezone.utc).year)
    check_domain(sheet, "sex", SEXES, optional=True)
    parse_dates(sheet, "deceased_on")
    facilities = _codes(session, Facility)
    home = sheet.col("home_facility_code")
    sheet.report((home != "") & ~home.isin(set(facilities)), "home_facility_code",
                 lambda i: f"unknown facility {home.iat[i]!r}")
    if sheet.problems:
        return sheet.problems
    nul = bulk.null_value(session)
    rows = list(zip(sheet.col("health_card_id").tolist(), _optional_ints(years, nul),
                    bulk.nulls(sheet.col("sex").tolist(), nul),
                    bulk.ids_or_none(home, facilities, nul), bulk.db_dates(session, sheet.col("deceased_on").tolist()),
                    repeat(bulk.db_bool(session, True))))
    bulk.upsert_rows(session, "patient", ("health_card_id", "birth_year", "sex", "home_facility_id",
                                          "deceased_on", "registered"), rows)
    report.patients = len(rows)
    return []


def _prescriptions(session: Session, sheet: Sheet, report: ImportReport) -> list[Problem]:
    if sheet.problems:
        return sheet.problems
    sheet.require(*[c for c, req in PRESCRIPTION_COLUMNS.items() if req])
    check_unique(sheet, "prescription_id")
    check_length(sheet, "prescription_id", 64)
    qty, has_qty = parse_quantities(sheet, "quantity")
    sheet.report(has_qty & (qty <= 0), "quantity", "must be greater than zero")
    days = parse_ints(sheet, "days_supply", 1, 3660)
    parse_dates(sheet, "issued_on")
    facilities, items = _codes(session, Facility), _codes(session, Item)
    fac, item = sheet.col("facility_code"), sheet.col("item_code")
    sheet.report((fac != "") & ~fac.isin(set(facilities)), "facility_code",
                 lambda i: f"unknown facility {fac.iat[i]!r}")
    sheet.report((item != "") & ~item.isin(set(items)), "item_code",
                 lambda i: f"unknown item {item.iat[i]!r}")
    if sheet.problems:
        return sheet.problems
    cards = sheet.col("health_card_id")
    patients = bulk.patient_ids(session, cards.tolist())
    report.unregistered_patients += patients.created
    nul = bulk.null_value(session)
    rows = list(zip(sheet.col("prescription_id").tolist(), bulk.lookup(cards, patients.ids).tolist(),
                    bulk.lookup(fac, facilities).tolist(), sheet.col("prescriber").tolist(),
                    bulk.lookup(item, items).tolist(), qty.tolist(), days.astype("int64").tolist(),
                    bulk.db_dates(session, sheet.col("issued_on").tolist()),
                    bulk.nulls(sheet.col("diagnosis_code").tolist(), nul)))
    bulk.upsert_rows(session, "prescription", ("code", "patient_id", "facility_id", "prescriber", "item_id",
                                               "quantity", "days_supply", "issued_on", "diagnosis_code"),
                     rows)
    report.prescriptions = len(rows)
    return []


__all__ = ["import_dataset", "ImportReport", "ImportFailed", "Problem", "FILES"]
