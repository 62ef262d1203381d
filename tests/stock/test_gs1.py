"""Reading GS1 barcodes: what a scanner types, what a person types, and what cannot be read."""

from __future__ import annotations

from datetime import date

import pytest

from stock.errors import BadScan, InvalidEntry
from stock.gs1 import Scan, gtin_problem, normalize_gtin, parse_scan

GS = "\x1d"
FULL = Scan(gtin="09501101530003", lot_number="ABC123", expiry_date=date(2026, 12, 31), serial_number="SN42")


@pytest.mark.parametrize("text", [
    f"0109501101530003{'17'}26123110ABC123{GS}21SN42",                   # raw, FNC1 as GS
    f"]d20109501101530003172612311" f"0ABC123{GS}21SN42",                  # DataMatrix symbology prefix
    f"{GS}010950110153000317261231" f"10ABC123{GS}21SN42\r\n",             # leading FNC1, scanner's CR LF
    "(01)09501101530003(17)261231(10)ABC123(21)SN42",                     # human-readable
    "0109501101530003172612311" "0ABC123<GS>21SN42",                       # GS spelled out by a scanner
    f"21SN42{GS}0109501101530003172612311" "0ABC123",                      # any element order
])
def test_full_datamatrix_in_every_form(text):
    assert parse_scan(text) == FULL


def test_expiry_day_00_is_the_last_day_of_the_month():
    assert parse_scan("(01)09501101530003(17)260200").expiry_date == date(2026, 2, 28)
    assert parse_scan("010950110153000317280200").expiry_date == date(2028, 2, 29)


def test_only_what_is_encoded():
    assert parse_scan("(01)09501101530003") == Scan(gtin="09501101530003")
    assert parse_scan("5012345678900") == Scan(gtin="05012345678900")  # a bare EAN-13 from a linear code


@pytest.mark.parametrize("text,problem,words", [
    ("", "empty", "empty"),
    ("   ", "empty", "empty"),
    ("hello world", "unreadable", "not a GS1 barcode"),
    ("(17)261231(10)ABC", "no_gtin", "no GTIN"),
    ("00123456789012345675", "no_gtin", "no GTIN"),                        # an SSCC, a pallet not a pack
    ("(01)09501101530004(17)261231", "check_digit", "wrong check digit: 4, where 3 was expected"),
    ("0109501101530004172612311" "0ABC", "check_digit", "GTIN 09501101530004"),
    ("5012345678901", "check_digit", "wrong check digit"),
    ("(17)261331(01)09501101530003", "unreadable", "not a GS1 barcode"),   # month 13
    ("(01)0950110153", "unreadable", "not a GS1 barcode"),                 # GTIN cut short
])
def test_bad_scans_name_the_problem(text, problem, words):
    with pytest.raises(BadScan) as err:
        parse_scan(text)
    assert err.value.problem == problem
    assert words in err.value.message
    assert err.value.field == "scan"
    assert isinstance(err.value, InvalidEntry)


@pytest.mark.parametrize("value,expected", [
    ("96385074", "00000096385074"), ("036000291452", "00036000291452"),
    ("5012345678900", "05012345678900"), ("09501101530003", "09501101530003"),
])
def test_gtins_of_every_length_normalise_to_14_digits(value, expected):
    assert gtin_problem(value) is None
    assert normalize_gtin(value) == expected


@pytest.mark.parametrize("value,words", [
    ("5012345678901", "wrong check digit"), ("12345", "not a GTIN"), ("501234567890A", "not a GTIN"),
    ("123456789012345", "not a GTIN"), ("５０１２３４５６７８９００", "not a GTIN"),
])
def test_bad_gtins(value, words):
    assert words in gtin_problem(value)
    with pytest.raises(InvalidEntry) as err:
        normalize_gtin(value)
    assert err.value.field == "gtin"
