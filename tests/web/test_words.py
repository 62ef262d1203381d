"""The names of enum values, counts, dates, numbers and refusals in the reader's language
(web.words, web.templating, web.access), and a refusal page read in French and Arabic on the live
app."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import update

from anomaly.detectors import ALL as DETECTORS
from stock.models import User
from tests.web.conftest import login
from web import templating, words
from web.access import MSG_NEEDS_ROLE, Forbidden, needs_role

LRI, PDI, FSI = "\u2066", "\u2069", "\u2068"


@pytest.mark.parametrize("lang,expected", [("en", "Open"), ("fr", "Ouvert"), ("ar", "مفتوح")])
def test_the_status_open_is_an_adjective_not_the_verb(lang, expected):
    assert words.label(lang, words.FLAG_STATUS, "open") == expected
    # The verb keeps its own translation where a link says "open this".
    assert templating.gettext("fr", "Open") != "Ouvert" or lang == "en"


def test_every_enum_value_and_detector_has_a_name_in_each_language():
    for enum, codes in words.ENUM_VALUES.items():
        for code in codes:
            assert code in words.LABELS[enum], (enum, code)
    assert set(DETECTORS) == set(words.LABELS[words.DETECTOR])
    for enum, table in words.LABELS.items():
        for code, (_context, english) in table.items():
            assert words.label("en", enum, code) == english
            ar = words.label("ar", enum, code)
            assert ar and ar != english, (enum, code, ar)  # every name has its Arabic


def test_a_code_without_a_name_is_shown_as_itself():
    assert words.label("fr", words.AUDIT_ACTION, "something_new") == "something_new"
    assert words.label("fr", words.ROLE, None) == ""


@pytest.mark.parametrize("lang,n,unit,expected", [
    ("en", 1, "tablet", "1 tablet"), ("en", 16, "piece", "16 pieces"), ("en", Decimal("2.5"), "ml", "2.5 ml"),
    ("fr", 1, "tablet", "1 comprimé"), ("fr", 16, "piece", "16 pièces"), ("fr", 1234, "vial", "1\u202f234 flacons"),
    ("ar", 1, "tablet", "قرص واحد"), ("ar", 2, "tablet", "قرصان"), ("ar", 5, "tablet", "5 أقراص"),
    ("ar", 11, "tablet", "11 قرصًا"), ("en", 3, "gallon", "3 gallon"),
])
def test_a_quantity_takes_the_plural_of_its_language(lang, n, unit, expected):
    assert words.quantity(lang, n, unit) == expected


@pytest.mark.parametrize("lang,n,expected", [("en", 1, "1 month"), ("en", 0.5, "0.5 months"), ("fr", 2, "2 mois"),
                                             ("ar", 2, "شهران"), ("ar", 4, "4 أشهر")])
def test_months_plural(lang, n, expected):
    assert words.months(lang, n) == expected


@pytest.mark.parametrize("lang", ["en", "fr", "ar"])
def test_a_short_date_is_iso_never_month_first(lang):
    assert templating._format_date(lang, date(2026, 7, 12), "short") == "2026-07-12"
    when = datetime(2026, 7, 12, 7, 5, tzinfo=timezone.utc)
    assert templating._format_datetime(lang, when, "short", tz="Africa/Tripoli") == "2026-07-12 09:05"


def test_a_negative_number_keeps_its_sign_in_arabic_text():
    assert templating._format_number("ar", -30) == f"{LRI}-30{PDI}"
    assert templating._format_decimal("ar", Decimal("-0.5"), 2) == f"{LRI}-0.50{PDI}"
    assert templating._format_number("ar", 30) == "30"
    assert templating._format_number("fr", -30) == "-30"


def test_bdi_and_isolate():
    assert str(words.bdi("u-BEN-HC01-01")) == "<bdi>u-BEN-HC01-01</bdi>"
    assert str(words.bdi("<b>x</b>")) == "<bdi>&lt;b&gt;x&lt;/b&gt;</bdi>"
    assert words.isolate("BEN-HC01") == f"{FSI}BEN-HC01{PDI}" and words.isolate(None) == ""


class _User:
    role = "pharmacist"


def test_a_refusal_is_worded_for_the_reader_and_stays_english_for_the_api():
    refusal = Forbidden(MSG_NEEDS_ROLE, params=needs_role(("auditor", "admin"), _User()))
    assert refusal.message == "this needs the role auditor or admin; you are pharmacist"
    assert refusal.in_language("fr") == "il faut le rôle Auditeur ou Administrateur ; vous êtes Pharmacien"
    assert refusal.in_language("en") == "this needs the role Auditor or Administrator; you are Pharmacist"
    outside = Forbidden("flag %(flag)s is outside your scope", params={"flag": "F123"})
    assert outside.in_language("ar") == f"التنبيه {FSI}F123{PDI} خارج نطاقك"


@pytest.mark.parametrize("lang,heading,words_", [
    ("fr", "Accès refusé", ["il faut le rôle", "Administrateur", "Pharmacien"]),
    ("ar", "غير مسموح", ["يتطلب هذا دور", "صيدلي"]),
])
def test_the_refusal_page_is_in_the_readers_language(live_server, lang, heading, words_):
    with live_server.Session() as s:
        s.execute(update(User).where(User.username == "pharm_h1").values(language=lang))
        s.commit()
    c = live_server.client()
    assert login(c, "pharm_h1").status_code == 303
    page = c.get("/admin/users")
    assert page.status_code == 403 and heading in page.text
    for expected in words_:
        assert expected in page.text, (expected, page.text[-1500:])
    assert "this needs the role" not in page.text and "pharmacist" not in page.text.split("<main", 1)[1]
    missing = c.get("/no-such-page")
    assert missing.status_code == 404 and "no such page" not in missing.text
