"""Scanning a pack: a GS1 barcode fills the item, lot and expiry of a form (dispense, receipt,
a line of a visit), keeping the pack's GTIN and serial to record with the entry."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from stock import errors as domain, gs1
from stock.masterdata import item_by_gtin
from stock.models import Facility, Item
from stock.requisitions.packs import pack_with_gtin
from web.pharmacy import queries as q
from web.pharmacy.shared import (
    MSG_SCAN_CHECK_DIGIT, MSG_SCAN_EMPTY, MSG_SCAN_LOT_NOT_HELD, MSG_SCAN_NO_GTIN, MSG_SCAN_OTHER_ITEM,
    MSG_SCAN_UNKNOWN_GTIN, MSG_SCAN_UNREADABLE, local_today, tr,
)


def scan_message(request: Request, exc: domain.BadScan) -> str:
    if exc.problem == "empty":
        return tr(request, MSG_SCAN_EMPTY)
    if exc.problem == "no_gtin":
        return tr(request, MSG_SCAN_NO_GTIN)
    if exc.problem == "check_digit":
        return tr(request, MSG_SCAN_CHECK_DIGIT, gtin=exc.gtin or "")
    return tr(request, MSG_SCAN_UNREADABLE)


def apply_scan(request: Request, db: Session, values: dict, errors: dict, *, packs: bool = False) -> bool:
    """Fill item, lot and expiry from the form's Scan field, keeping the pack's GTIN and serial in
    hidden fields. A scan that cannot be used is an error next to the field, with the scan kept;
    one that filled the form is cleared, ready for the next pack. True when a scan was applied."""
    text = values.get("scan", "")
    if not text.strip():
        return False
    try:
        scan = gs1.parse_scan(text)
    except domain.BadScan as exc:
        errors["scan"] = scan_message(request, exc)
        return False
    item, pack = item_by_gtin(db, scan.gtin), None
    if item is None and packs:  # a form counted in packs: a pack's GTIN names its item and pack
        item, pack = pack_with_gtin(db, scan.gtin) or (None, None)
    if item is None:
        errors["scan"] = tr(request, MSG_SCAN_UNKNOWN_GTIN, gtin=scan.gtin)
        return False
    values.update(item_code=item.code, scan_gtin=scan.gtin if pack is None else item.gtin or "",
                  serial_number=scan.serial_number or "", scan="", pack=pack.name if pack else "")
    if scan.lot_number is not None:
        values["lot_number"] = scan.lot_number
    if scan.expiry_date is not None:
        values["expiry_date"] = scan.expiry_date.isoformat()
    return True


def scanned_pack(request: Request, values: dict, item: Item, errors: dict) -> str | None:
    """The serial to record: the scanned pack's, if the form still names the scanned item."""
    serial = values.get("serial_number", "").strip()
    if not serial:
        return None
    scanned = values.get("scan_gtin", "").strip()
    if scanned and item.gtin != scanned:
        errors["scan"] = tr(request, MSG_SCAN_OTHER_ITEM, scanned=scanned, code=item.code)
        return None
    return serial


def check_scanned_lot(request: Request, db: Session, fac: Facility, values: dict, errors: dict) -> None:
    lot = values.get("lot_number", "")
    held = q.fefo_lots(db, fac, values["item_code"], local_today(request, fac))
    if lot and not any(c.lot_number == lot for c in held):
        errors["lot_number"] = tr(request, MSG_SCAN_LOT_NOT_HELD, lot=lot, code=values["item_code"])


