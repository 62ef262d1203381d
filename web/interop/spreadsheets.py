"""Stock on hand, a stock card and flags as spreadsheets (.xlsx) and CSV.

A facility manager opens these in Excel or LibreOffice, so cells are typed: quantities are numbers,
dates are dates, times are times in the facility's zone (Excel has no time zones; the header names
the zone). The flags CSV is exactly the data contract's export (``anomaly.export``), so a tool that
reads ``dawa flags export`` reads this too.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

from anomaly import export as flag_export
from stock.cells import csv_text, xlsx_text
from stock.errors import InvalidEntry
from stock.pseudonyms import maybe_pseudonym, patient_key
from stock.masterdata import facility_by_code
from stock.queries import on_hand, stock_card
from stock.settings import Settings

KINDS = ("on-hand", "stock-card", "flags")
FORMATS = ("xlsx", "csv")
MEDIA_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               "csv": "text/csv; charset=utf-8"}


@dataclass
class Sheet:
    """A table with typed cells, written the same way to either format."""

    title: str
    columns: list[str]
    rows: list[tuple] = field(default_factory=list)
    zone: str = "UTC"
    """Times are shown in this zone in the workbook (the CSV keeps their offset)."""


def on_hand_sheet(session: Session, *, facility_code: str | None = None, item_code: str | None = None,
                  region: str | None = None) -> Sheet:
    """Stock on hand by facility, item and lot (the same rows as ``dawa stock --by-lot``)."""
    rows = on_hand(session, facility_code=facility_code, item_code=item_code, region=region)
    return Sheet("Stock on hand",
                 ["facility_code", "item_code", "item_name", "unit", "lot_number", "expiry_date", "on_hand"],
                 [(r.facility_code, r.item_code, r.item_name, r.unit, r.lot_number, r.expiry_date, r.on_hand)
                  for r in rows])


def stock_card_sheet(session: Session, facility_code: str, item_code: str, *, key: str, default_zone: str,
                     since: datetime | None = None, until: datetime | None = None) -> Sheet:
    """One facility and item's movements with the running balance; the first row is the opening.
    Patients are named by pseudonym under ``key``; times are in the facility's zone, else in
    ``default_zone``."""
    card = stock_card(session, facility_code, item_code, since=since, until=until)
    fac = facility_by_code(session, facility_code)
    zone = fac.timezone or default_zone
    sheet = Sheet(f"Stock card {facility_code} {item_code}"[:31],
                  ["occurred_at", "entry_id", "kind", "lot_number", "quantity", "effect", "balance",
                   "counterparty", "patient", "prescription_id", "reason", "document_number",
                   "recorded_by", "reverses"], zone=zone)
    sheet.rows.append((since, "", "opening", "", None, None, card.opening, None, None, None, None, None,
                       None, None))
    for line in card.lines:
        sheet.rows.append((line.occurred_at, line.entry_id, line.kind, line.lot_number, line.quantity,
                           line.effect, line.balance, line.counterparty, maybe_pseudonym(line.health_card_id, key),
                           line.prescription_id, line.reason, line.document_number, line.recorded_by,
                           line.reverses))
    return sheet


def flags_sheet(session: Session, key: str, **filters) -> Sheet:
    """Flags in the contract's export columns, most suspicious first, patients by pseudonym under
    ``key``. ``filters`` are those of ``anomaly.export.query`` (region, facility, detector,
    severity, status)."""
    rows = flag_export.contract_rows(session, key=key, **filters)
    return Sheet("Flags", list(flag_export.EXPORT_COLUMNS),
                 [(r.flag_id, r.detector, r.score, r.severity, r.facility_code, r.subject, r.subject_id,
                   r.entry_ids, r.reason, _parse_time(r.created_at)) for r in rows])


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _xlsx_value(value, zone: ZoneInfo):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None)
    return value


def to_xlsx(sheet: Sheet) -> bytes:
    """One sheet with a frozen header row, typed cells and readable column widths."""
    wb = Workbook()
    ws = wb.active
    ws.title = re.sub(r"[\[\]:*?/\\]", "-", sheet.title)[:31]  # what Excel allows in a sheet name
    zone = ZoneInfo(sheet.zone)
    header = [f"{c} ({sheet.zone})" if _is_time_column(sheet, i) else c for i, c in enumerate(sheet.columns)]
    ws.append(header)
    for row in sheet.rows:
        ws.append([_xlsx_value(v, zone) for v in row])
    for row_cells in ws.iter_rows():
        for c in row_cells:
            xlsx_text(c)
    for col_idx, name in enumerate(header, start=1):
        width = len(name)
        for cell in ws.iter_rows(min_row=2, min_col=col_idx, max_col=col_idx):
            c = cell[0]
            if isinstance(c.value, datetime):
                c.number_format = "yyyy-mm-dd hh:mm:ss"
                width = max(width, 19)
            elif isinstance(c.value, date):
                c.number_format = "yyyy-mm-dd"
                width = max(width, 10)
            elif c.value is not None:
                width = max(width, min(len(str(c.value)), 60))
        ws.column_dimensions[get_column_letter(col_idx)].width = width + 2
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _is_time_column(sheet: Sheet, index: int) -> bool:
    return any(isinstance(row[index], datetime) for row in sheet.rows)


def _csv_value(value, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat().replace("+00:00", "Z")
    if isinstance(value, (date, Decimal)):
        return str(value)
    return csv_text(str(value))


def to_csv(sheet: Sheet) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_text(c) for c in sheet.columns])
    zone = ZoneInfo(sheet.zone)
    for row in sheet.rows:
        writer.writerow([_csv_value(v, zone) for v in row])
    return buf.getvalue()


def export(session: Session, kind: str, fmt: str, *, settings: Settings, facility_code: str | None = None,
           item_code: str | None = None, region: str | None = None, since: datetime | None = None,
           until: datetime | None = None, detector: str | None = None, severity: str | None = None,
           status: str | None = None, key: str | None = None) -> tuple[bytes, int]:
    """The file's bytes and its number of data rows. ``kind`` is on-hand, stock-card or flags;
    a stock card needs a facility and an item. The flags CSV is ``anomaly.export.to_csv`` itself.
    Patients are named by pseudonym under ``key``, else under the patient key of ``settings``
    (the install's); times of a facility that names no zone are in its ``default_timezone``."""
    if kind not in KINDS:
        raise InvalidEntry(f"unknown export {kind!r}: choose one of {', '.join(KINDS)}", field="kind")
    if fmt not in FORMATS:
        raise InvalidEntry(f"unknown format {fmt!r}: choose xlsx or csv", field="format")
    if kind == "flags":
        filters = dict(region=region, facility=facility_code, detector=detector, severity=severity,
                       status=status)
        if fmt == "csv":
            key = key or patient_key(settings)
            rows = flag_export.contract_rows(session, key=key, **filters)
            return flag_export.to_csv(rows).encode("utf-8"), len(rows)
        sheet = flags_sheet(session, key or patient_key(settings), **filters)
    elif kind == "on-hand":
        sheet = on_hand_sheet(session, facility_code=facility_code, item_code=item_code, region=region)
    else:
        if not facility_code or not item_code:
            raise InvalidEntry("a stock card needs a facility and an item", field="facility_code")
        sheet = stock_card_sheet(session, facility_code, item_code, since=since, until=until,
                                 key=key or patient_key(settings), default_zone=settings.default_timezone)
    count = len(sheet.rows) - (1 if kind == "stock-card" else 0)
    body = to_xlsx(sheet) if fmt == "xlsx" else to_csv(sheet).encode("utf-8")
    return body, count


def write(session: Session, kind: str, fmt: str, out: Path, **filters) -> int:
    body, count = export(session, kind, fmt, **filters)
    Path(out).write_bytes(body)
    return count


__all__ = ["Sheet", "on_hand_sheet", "stock_card_sheet", "flags_sheet", "to_xlsx", "to_csv", "export",
           "write", "KINDS", "FORMATS", "MEDIA_TYPES"]
