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


def _with_check_digit(body: str) -> str:
    """``body`` and its GS1 mod-10 check digit, computed here from the General Specifications'
    rule (weights 3 and 1 from the right), not by the code under test."""
    total = sum(int(d) * (3 if k % 2 == 0 else 1) for k, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


# Every GS1 prefix range: all 1,000 three-digit GTIN-13 prefixes, GTIN-8 and GTIN-12 over every
# leading digit pair, GTIN-14 over every indicator digit and leading prefix digit.
GTIN13 = [_with_check_digit(f"{p:03d}{(p * 7919) % 10**9:09d}") for p in range(1000)]
GTIN8 = [_with_check_digit(f"{p:02d}{(p * 104729) % 10**5:05d}") for p in range(100)]
GTIN12 = [_with_check_digit(f"{p:02d}{(p * 15485863) % 10**9:09d}") for p in range(100)]
GTIN14 = [_with_check_digit(f"{i}{p}{(i * 31 + p * 977) % 10**11:011d}") for i in range(10) for p in range(10)]


@pytest.mark.parametrize("gtins", [GTIN8, GTIN12, GTIN13, GTIN14], ids=["GTIN-8", "GTIN-12", "GTIN-13", "GTIN-14"])
def test_bare_gtins_of_every_prefix_range_are_read_as_gtins(gtins):
    wrong = {}
    for gtin in gtins:
        try:
            got = parse_scan(gtin)
        except BadScan as exc:
            wrong[gtin] = exc.message
            continue
        if got != Scan(gtin=gtin.zfill(14)):
            wrong[gtin] = got
    assert wrong == {}


@pytest.mark.parametrize("gtin", ["4006381333931", "3017620422003", "8001505005592", "9780201379624",
                                  "96385074", "036000291452"])
def test_real_products_whose_digits_look_like_application_identifiers(gtin):
    assert parse_scan(gtin).gtin == gtin.zfill(14)
    assert parse_scan(f" {gtin}\r\n").gtin == gtin.zfill(14)


@pytest.mark.parametrize("gtins", [GTIN8, GTIN13], ids=["GTIN-8", "GTIN-13"])
def test_bare_gtins_with_a_wrong_check_digit_say_so(gtins):
    for gtin in gtins[::37]:
        bad = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)
        with pytest.raises(BadScan) as err:
            parse_scan(bad)
        assert err.value.problem == "check_digit" and err.value.gtin == bad.zfill(14)
