"""GS1 barcodes on medicine packs: GTINs of items and scanned GS1 DataMatrix strings.

A pack's DataMatrix carries its GTIN (AI 01), expiry (AI 17), lot (AI 10) and serial number
(AI 21). A scanner that acts as a keyboard types it as raw element strings, with the group
separator (ASCII 29, FNC1) after a variable-length field and often the symbology prefix ``]d2``
in front; a person may type the human-readable form ``(01)...(17)...(10)...(21)...`` printed
beside the code. The maintained ``biip`` library does the GS1 parsing (application identifier
tables, check digits, the YYMMDD window and day 00 meaning the last day of the month); this module
turns its result into what the ledger needs and its failures into a domain error that names what
is wrong.

A bare string of 8, 12, 13 or 14 digits is a GTIN from a linear barcode (EAN-8, UPC-A, EAN-13,
ITF-14) and is read as one before any attempt at element strings: many real GTIN-13s begin with
digits that are also application identifiers (``4006381333931`` would read as AI 400), and no
element string that holds a GTIN is that short (AI 01 and its 14 digits are 16 characters).

GTINs are kept as 14 digits, the form a DataMatrix carries: a GTIN-13 ``5012345678900`` and its
14-digit form ``05012345678900`` are the same pack.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date

from biip import ParseError, parse
from biip.checksums import gs1_standard_check_digit
from biip.gs1_messages import GS1Message

from stock.errors import BadScan, InvalidEntry

SERIAL_MAX = 20
"""A serial number (AI 21) is at most 20 characters..."""
CSET82 = frozenset(string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_")
"""... of GS1 character set 82 (General Specifications, figure 7.11-1). Keeping stored serials to
it also keeps control characters, such as the hash chain's field separator, out of the ledger."""
SERIAL_PATTERN = r"[A-Za-z0-9!\"%&'()*+,\-./:;<=>?_]{1,20}"
"""CSET82 and SERIAL_MAX as a regular expression, for checking a whole column at once."""

GTIN_LENGTHS = (8, 12, 13, 14)
GS = "\x1d"
_GS_SPELLINGS = ("<GS>", "{GS}", "[GS]", "\\x1d", "\\u001d")
"""How scanners and people write the group separator when they cannot send the control character."""


@dataclass(frozen=True)
class Scan:
    """What a pack's barcode says. ``gtin`` has 14 digits; the rest is None when not encoded."""

    gtin: str
    lot_number: str | None = None
    expiry_date: date | None = None
    serial_number: str | None = None


def _check_digit_problem(digits: str) -> str | None:
    expected = gs1_standard_check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        return f"GTIN {digits} has a wrong check digit: {digits[-1]}, where {expected} was expected"
    return None


def gtin_problem(value: str) -> str | None:
    """Why ``value`` is not a GTIN, or None: 8, 12, 13 or 14 digits with a correct check digit."""
    if not value.isascii() or not value.isdigit() or len(value) not in GTIN_LENGTHS:
        return f"{value!r} is not a GTIN (8, 12, 13 or 14 digits)"
    return _check_digit_problem(value)


def normalize_gtin(value: str) -> str:
    """A valid GTIN as its 14 digits; raises InvalidEntry (field ``gtin``) naming the problem."""
    value = value.strip()
    problem = gtin_problem(value)
    if problem:
        raise InvalidEntry(problem, field="gtin")
    return value.zfill(14)


def _clean(text: str) -> str:
    text = text.strip().replace("\r", "").replace("\n", "")
    for spelling in _GS_SPELLINGS:
        text = text.replace(spelling, GS)
    return text


def parse_scan(text: str) -> Scan:
    """Read a scanned GS1 barcode: raw element strings (with or without a symbology prefix such
    as ``]d2``, variable fields ended by the group separator), the human-readable form with
    parentheses, or a bare GTIN from a linear barcode. Raises BadScan naming what is wrong."""
    raw = _clean(text or "")
    if not raw:
        raise BadScan("the scan is empty", problem="empty")
    if raw.isascii() and raw.isdigit() and len(raw) in GTIN_LENGTHS:
        problem = _check_digit_problem(raw)
        if problem:
            raise BadScan(problem, problem="check_digit", gtin=raw.zfill(14))
        return Scan(gtin=raw.zfill(14))
    try:
        if raw.startswith("("):
            message = GS1Message.parse_hri(raw)
        else:
            result = parse(raw)
            if result.gs1_message is None:
                if result.gtin is not None:
                    return Scan(gtin=result.gtin.as_gtin_14())
                raise BadScan(f"not a GS1 barcode: {result.gs1_message_error or 'no element strings found'}",
                              problem="unreadable")
            message = result.gs1_message
    except ParseError as exc:
        raise BadScan(f"not a GS1 barcode: {exc}", problem="unreadable") from exc
    found = {es.ai.ai: es for es in message.element_strings}
    gtin = found.get("01")
    if gtin is None:
        raise BadScan("the barcode holds no GTIN (application identifier 01)", problem="no_gtin")
    if gtin.gtin is None:
        raise BadScan(_check_digit_problem(gtin.value) or f"GTIN {gtin.value}: {gtin.gtin_error}",
                      problem="check_digit", gtin=gtin.value)
    expiry = found.get("17")
    lot = found.get("10")
    serial = found.get("21")
    return Scan(gtin=gtin.gtin.as_gtin_14(),
                lot_number=lot.value if lot is not None else None,
                expiry_date=expiry.date if expiry is not None else None,
                serial_number=serial.value if serial is not None else None)


__all__ = ["Scan", "BadScan", "parse_scan", "gtin_problem", "normalize_gtin", "SERIAL_MAX", "CSET82",
           "SERIAL_PATTERN"]
