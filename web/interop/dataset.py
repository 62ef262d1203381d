"""``dawa export dataset``: the database's master data and ledger back in the data contract's form.

Written as one workbook with a sheet per contract file (``facilities`` ... ``stock_reports``) or as
a folder of the contract's CSV files, so that ``dawa import`` of the result into an empty database
gives the same ledger: the same entries, lots, balances and, per facility, the same hash chain.

What makes that hold:

- ledger rows are written in the order import applies them (``occurred_at``, then file order), and
  within that in each facility's chain order, so the replay gives each entry its position again;
- each row carries ``recorded_at``, which the chain hash covers;
- each row of a lot with an expiry carries it, so whichever row brings the lot in names it;
- only registered patients go to patients.csv: a health card seen only in the ledger or a
  prescription comes back as an unregistered patient, as it was.

Patients are named by pseudonym (stock.pseudonyms) unless the caller asks for the cards in clear
(``dawa export dataset --clear-cards --by USER``: a national auditor or admin, audited). The
pseudonymous copy imports too, with the same patients linked the same way, but its hash chains
differ from the original's, since the chain covers each entry's card.

A chain can be replayed only if each facility's entries were recorded in ``occurred_at`` order.
An entry recorded after a later-dated one (a back-dated dispensing typed in the next morning) is
applied earlier on import, which changes positions, hashes and perhaps counts' book quantities:
those facilities are listed in ``DatasetExport.out_of_order`` so nobody mistakes the copy for an
identical one. Stock reports are written at their current revision (earlier revisions are kept in
the database only). Facilities' time zones are not part of the contract and are not written.

In the workbook, cells are typed where Excel can hold the value exactly: quantities and whole
numbers as numbers, dates as dates, ``controlled`` as TRUE/FALSE. Timestamps are text with their
offset (Excel has no time zones), in the facility's zone. Codes and ids stay text.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from stock import bulk, importer
from stock import reports as stock_reports
from stock.models import Facility, Item, LedgerEntry, Lot, Patient, Prescription, StockReport
from stock.pseudonyms import NoPatientKey, pseudonym

FORMATS = ("xlsx", "csv")
FETCH = 10_000


@dataclass
class DatasetExport:
    """What was written: rows per contract file, and the facilities whose chains a re-import
    cannot reproduce (entries recorded out of ``occurred_at`` order: facility -> how many)."""

    rows: dict[str, int] = field(default_factory=dict)
    out_of_order: dict[str, int] = field(default_factory=dict)
    pseudonymous: bool = False
    """Health cards written as pseudonyms."""

    def __str__(self) -> str:
        return ", ".join(f"{n} {file.removesuffix('.csv')}" for file, n in self.rows.items())


def _decimal_text(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _time_text(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).isoformat()


def _facilities(session: Session) -> Iterator[dict]:
    parent = aliased(Facility)
    rows = session.execute(select(Facility.code, Facility.name, Facility.region, Facility.kind, parent.code)
                           .outerjoin(parent, parent.id == Facility.parent_id).order_by(Facility.code))
    for code, name, region, kind, parent_code in rows:
        yield {"code": code, "name": name, "region": region, "kind": kind, "parent_code": parent_code}


def _items(session: Session) -> Iterator[dict]:
    for i in session.scalars(select(Item).order_by(Item.code)):
        yield {"code": i.code, "name": i.name, "atc_code": i.atc_code, "form": i.form, "unit": i.unit,
               "controlled": bool(i.controlled), "max_dispense_quantity": i.max_dispense_quantity,
               "gtin": i.gtin}


def _patients(session: Session, card_of: Callable[[str | None], str | None]) -> Iterator[dict]:
    rows = session.execute(select(Patient.health_card_id, Patient.birth_year, Patient.sex, Facility.code,
                                  Patient.deceased_on)
                           .outerjoin(Facility, Facility.id == Patient.home_facility_id)
                           .where(Patient.registered.is_(True)).order_by(Patient.health_card_id)
                           .execution_options(yield_per=FETCH))
    for card, year, sex, home, deceased in rows:
        yield {"health_card_id": card_of(card), "birth_year": year, "sex": sex, "home_facility_code": home,
               "deceased_on": deceased}


def _prescriptions(session: Session, card_of: Callable[[str | None], str | None]) -> Iterator[dict]:
    rows = session.execute(select(Prescription.code, Patient.health_card_id, Facility.code,
                                  Prescription.prescriber, Item.code, Prescription.quantity,
                                  Prescription.days_supply, Prescription.issued_on, Prescription.diagnosis_code)
                           .join(Patient, Patient.id == Prescription.patient_id)
                           .join(Facility, Facility.id == Prescription.facility_id)
                           .join(Item, Item.id == Prescription.item_id).order_by(Prescription.code)
                           .execution_options(yield_per=FETCH))
    for code, card, fac, prescriber, item, qty, days, issued, diagnosis in rows:
        yield {"prescription_id": code, "health_card_id": card_of(card), "facility_code": fac, "prescriber": prescriber,
               "item_code": item, "quantity": qty, "days_supply": days, "issued_on": issued,
               "diagnosis_code": diagnosis}


def _ledger(session: Session, result: DatasetExport, card_of: Callable[[str | None], str | None],
            default_zone: str) -> Iterator[dict]:
    zones = {code: ZoneInfo(tz or default_zone)
             for code, tz in session.execute(select(Facility.code, Facility.timezone))}
    last_seq: dict[int, int] = {}
    suspect: set[int] = set()
    rows = session.execute(
        select(LedgerEntry.entry_id, LedgerEntry.occurred_at, Facility.code, LedgerEntry.kind, Item.code,
               Lot.lot_number, Lot.expiry_date, LedgerEntry.quantity, Patient.health_card_id,
               LedgerEntry.prescription_ref, LedgerEntry.counterparty, LedgerEntry.reason,
               LedgerEntry.recorded_by, LedgerEntry.document_number, LedgerEntry.reverses,
               LedgerEntry.recorded_at, LedgerEntry.facility_id, LedgerEntry.chain_seq,
               LedgerEntry.serial_number)
        .join(Facility, Facility.id == LedgerEntry.facility_id)
        .join(Item, Item.id == LedgerEntry.item_id)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
        .order_by(LedgerEntry.occurred_at, LedgerEntry.facility_id, LedgerEntry.chain_seq)
        .execution_options(yield_per=FETCH))
    for (entry_id, occurred, fac, kind, item, lot, expiry, qty, card, rx, cp, reason, by, doc, reverses,
         recorded, facility_id, seq, serial) in rows:
        if seq < last_seq.get(facility_id, 0):
            suspect.add(facility_id)
        last_seq[facility_id] = max(seq, last_seq.get(facility_id, 0))
        zone = zones[fac]
        yield {"entry_id": entry_id, "occurred_at": _time_text(occurred, zone), "facility_code": fac,
               "kind": kind, "item_code": item, "lot_number": lot, "expiry_date": expiry, "quantity": qty,
               "health_card_id": card_of(card), "prescription_id": rx, "counterparty_code": cp, "reason": reason,
               "recorded_by": by, "document_number": doc, "reverses": reverses,
               "recorded_at": _time_text(recorded, zone), "serial_number": serial}
    for facility_id in sorted(suspect):
        code, n = _backdated(session, facility_id)
        result.out_of_order[code] = n


def _backdated(session: Session, facility_id: int) -> tuple[str, int]:
    """A facility's code and how many of its entries were recorded after a later-dated one."""
    latest, n = None, 0
    for occurred in session.scalars(select(LedgerEntry.occurred_at).where(LedgerEntry.facility_id == facility_id)
                                    .order_by(LedgerEntry.chain_seq).execution_options(yield_per=FETCH)):
        if latest is not None and occurred < latest:
            n += 1
        else:
            latest = occurred
    return session.scalar(select(Facility.code).where(Facility.id == facility_id)), n


def _stock_reports(session: Session) -> Iterator[dict]:
    current = (select(StockReport.facility_id, StockReport.item_id, StockReport.period,
                      func.max(StockReport.revision).label("rev"))
               .group_by(StockReport.facility_id, StockReport.item_id, StockReport.period)).subquery()
    rows = session.execute(
        select(Facility.code, Item.code, StockReport)
        .join(current, (current.c.facility_id == StockReport.facility_id)
              & (current.c.item_id == StockReport.item_id) & (current.c.period == StockReport.period)
              & (current.c.rev == StockReport.revision))
        .join(Facility, Facility.id == StockReport.facility_id).join(Item, Item.id == StockReport.item_id)
        .order_by(Facility.code, Item.code, StockReport.period).execution_options(yield_per=FETCH))
    for fac, item, r in rows:
        yield {"facility_code": fac, "item_code": item, "period": r.period, "opening": r.opening,
               "received": r.received, "consumed": r.consumed, "adjustment": r.adjustment, "closing": r.closing,
               "stockout_days": r.stockout_days, "ordered": r.ordered}


def tables(session: Session, result: DatasetExport, card_of: Callable[[str | None], str | None] | None = None,
           *, default_zone: str) -> Iterator[tuple[str, list[str], Iterator[dict]]]:
    """Each contract file's name, columns (the importer's) and rows as typed values, in import order;
    health cards as ``card_of`` writes them (as stored when it is not given); times in their
    facility's zone, else in ``default_zone``."""
    card_of = card_of or (lambda card: card)
    yield "facilities.csv", list(importer.FACILITY_COLUMNS), _facilities(session)
    yield "items.csv", list(importer.ITEM_COLUMNS), _items(session)
    yield "patients.csv", list(importer.PATIENT_COLUMNS), _patients(session, card_of)
    yield "prescriptions.csv", list(importer.PRESCRIPTION_COLUMNS), _prescriptions(session, card_of)
    yield "ledger.csv", list(bulk.LEDGER_COLUMNS), _ledger(session, result, card_of, default_zone)
    yield stock_reports.FILE, list(stock_reports.COLUMNS), _stock_reports(session)


def csv_text(value) -> str:
    """A value as the contract's CSV text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _xlsx_cell(ws, value):
    """A value as a typed cell: Excel keeps numbers, dates and booleans exactly, text stays text
    (a value starting with '=' included: it is data, not a formula)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date):
        cell = WriteOnlyCell(ws, value=value)
        cell.number_format = "yyyy-mm-dd"
        return cell
    if isinstance(value, str) and value.startswith("="):
        cell = WriteOnlyCell(ws, value=value)
        cell.data_type = "s"
        return cell
    return value


def _replace(tmp: Path, out: Path) -> None:
    os.replace(tmp, out)


def write_xlsx(session: Session, out: Path, card_of=None, *, default_zone: str) -> DatasetExport:
    """One workbook, a sheet per contract file (header row, then rows), streamed (write-only)."""
    out = Path(out)
    result = DatasetExport()
    wb = Workbook(write_only=True)
    for file, columns, rows in tables(session, result, card_of, default_zone=default_zone):
        ws = wb.create_sheet(file.removesuffix(".csv"))
        ws.freeze_panes = "A2"
        ws.append(columns)
        n = 0
        for row in rows:
            ws.append([_xlsx_cell(ws, row.get(c)) for c in columns])
            n += 1
        result.rows[file] = n
    tmp = out.with_name(out.name + ".partial")
    wb.save(tmp)
    _replace(tmp, out)
    return result


def write_csv_folder(session: Session, folder: Path, card_of=None, *, default_zone: str) -> DatasetExport:
    """The contract's folder form: every file is written (a header alone when empty), so no file
    of an earlier export is left beside this one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result = DatasetExport()
    for file, columns, rows in tables(session, result, card_of, default_zone=default_zone):
        tmp = folder / (file + ".partial")
        n = 0
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow([csv_text(row.get(c)) for c in columns])
                n += 1
        _replace(tmp, folder / file)
        result.rows[file] = n
    return result


def write(session: Session, out: Path, fmt: str, *, key: str | None, default_zone: str,
          clear_cards: bool = False) -> DatasetExport:
    """``fmt`` xlsx: the workbook ``out``; csv: the folder ``out``. Times are in their facility's
    zone, else in ``default_zone`` (the install's ``default_timezone``). Patients are named by their
    pseudonym under ``key`` (stock.pseudonyms) wherever a health card would be: the copy holds
    the same patients, linked the same way, and no card. ``clear_cards`` writes the cards themselves
    (a copy that imports back to the same hash chains), for a caller who was let do that."""
    if clear_cards:
        card_of = None
    else:
        if not key:
            raise NoPatientKey("a data set names patients by pseudonym: DAWA_PATIENT_ID_KEY is needed")
        card_of = functools.lru_cache(maxsize=65536)(lambda card: None if card is None else pseudonym(card, key))
    if fmt == "xlsx":
        result = write_xlsx(session, out, card_of, default_zone=default_zone)
    elif fmt == "csv":
        result = write_csv_folder(session, out, card_of, default_zone=default_zone)
    else:
        raise ValueError(f"unknown format {fmt!r}: choose xlsx or csv")
    result.pseudonymous = not clear_cards
    return result


__all__ = ["DatasetExport", "write", "write_xlsx", "write_csv_folder", "tables", "csv_text", "FORMATS"]
