"""DHIS2 dataValueSets: monthly figures equal to sums computed independently from a hand-built ledger."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from stock.db import session_factory
from stock.ledger import post, reverse
from tests.stock.builders import build_world, entry
from stock.errors import DawaError
from web.interop.dhis2 import MappingError, export_data_value_set, monthly_aggregates, parse_mapping, parse_period

TRIPOLI = ZoneInfo("Africa/Tripoli")  # the default zone; the test facilities name none
NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


def local(day: int, hour: int = 9, month: int = 3, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TRIPOLI)


# (facility, kind, item, quantity, when, extra): the movements, in the order they are posted.
MOVES = [
    ("WH-C", "receipt", "MOR10", 1000, local(1, 0, minute=30), {"counterparty_code": "PHARMA"}),  # 28 Feb UTC
    ("H1", "receipt", "MOR10", 100, local(1, 0, minute=30), {}),
    ("H1", "dispense", "MOR10", 30, local(5), {}),
    ("H1", "dispense", "MOR10", 70, local(10), {}),          # empty from the 10th ...
    ("H1", "receipt", "MOR10", 50, local(15), {}),            # ... to the 14th: 5 stockout days
    ("H1", "dispense", "MOR10", 10, local(20), {"entry_id": "to-reverse"}),
    ("H1", "loss", "MOR10", 5, local(25), {}),
    ("H1", "dispense", "MOR10", 5, local(1, 0, month=4, minute=30), {}),  # 31 March UTC, April locally
    ("H1", "receipt", "GLOVE", 200, local(2), {}),
    ("H1", "dispense", "GLOVE", 20, local(3), {}),
    ("WH-C", "transfer_out", "MOR10", 40, local(19), {"counterparty_code": "HC2", "document_number": "W1"}),
    ("HC2", "transfer_in", "MOR10", 40, local(20), {"counterparty_code": "WH-C", "document_number": "W1"}),
    ("HC2", "dispense", "MOR10", 40, local(28), {}),          # empty 28-31: 4 days; held only from the 20th
]


@pytest.fixture
def ledger(session):
    build_world(session)
    post(session, [entry(kind, q, facility=f, item=i, lot="", at=at, **extra)
                   for f, kind, i, q, at, extra in MOVES])
    reverse(session, "to-reverse", reason="recorded in error", by="u2", now=local(2, month=4), new_id="rev")
    session.commit()
    return session


def expected_march(facility: str, item: str) -> tuple[Decimal, Decimal, int]:
    """Stock on hand at the end of March, consumption and stockout days, by plain arithmetic."""
    sign = {"receipt": 1, "transfer_in": 1, "dispense": -1, "transfer_out": -1, "loss": -1}
    end = datetime(2026, 4, 1, tzinfo=TRIPOLI)
    mine = [(k, Decimal(q), at, x) for f, k, i, q, at, x in MOVES if f == facility and i == item]
    on_hand = sum((sign[k] * q for k, q, at, _x in mine if at < end), Decimal(0))
    used = sum((q for k, q, at, x in mine
                if k == "dispense" and at.month == 3 and at < end and x.get("entry_id") != "to-reverse"),
               Decimal(0))
    out_days = 0
    first = min(at for _k, _q, at, _x in mine).date()
    for n in range(31):
        day = date(2026, 3, 1) + timedelta(days=n)
        day_end = datetime(day.year, day.month, day.day, tzinfo=TRIPOLI) + timedelta(days=1)
        balance = sum((sign[k] * q for k, q, at, _x in mine if at < day_end), Decimal(0))
        if day >= first and balance <= 0:
            out_days += 1
    return on_hand, used, out_days


MAPPING = {
    "dataSet": "lmisMonthly",
    "orgUnits": {"H1": "OrgUnitH001", "HC2": "OrgUnitHC02", "ZZ9": "OrgUnitZZ09"},
    "items": {
        "MOR10": {
            "stock_on_hand": {"dataElement": "MorphineSOH", "categoryOptionCombo": "HllvX50cXC0"},
            "consumption": "MorphineUse",
            "stockout_days": "MorphineOut",
        },
        "INSG": {"stock_on_hand": "InsulinSOH1"},
    },
}


def test_monthly_aggregates_equal_independent_sums(ledger):
    got = {(a.facility_code, a.item_code): (a.stock_on_hand, a.consumption, a.stockout_days)
           for a in monthly_aggregates(ledger, "2026-03", now=NOW, default_zone=TRIPOLI.key)}
    assert set(got) == {("H1", "MOR10"), ("H1", "GLOVE"), ("HC2", "MOR10"), ("WH-C", "MOR10")}
    for key, value in got.items():
        assert value == expected_march(*key), key
    # The same figures written out, so that a wrong helper above cannot hide a wrong answer.
    assert got[("H1", "MOR10")] == (Decimal(35), Decimal(100), 5)
    assert got[("HC2", "MOR10")] == (Decimal(0), Decimal(40), 4)
    assert got[("WH-C", "MOR10")] == (Decimal(960), Decimal(0), 0)


def test_days_not_yet_over_are_not_stockout_days(ledger):
    mid_march = datetime(2026, 3, 12, 12, tzinfo=timezone.utc)
    h1 = next(a for a in monthly_aggregates(ledger, "2026-03", now=mid_march, default_zone=TRIPOLI.key)
              if (a.facility_code, a.item_code) == ("H1", "MOR10"))
    assert h1.stockout_days == 2  # the 10th and 11th have ended; the 12th has not


def test_payload_maps_values_and_reports_what_is_unmapped(ledger):
    result = export_data_value_set(ledger, parse_mapping(MAPPING), "2026-03", now=NOW, default_zone=TRIPOLI.key)
    payload = json.loads(result.to_json())
    assert payload["dataSet"] == "lmisMonthly" and payload["period"] == "202603"
    values = {(v["orgUnit"], v["dataElement"], v.get("categoryOptionCombo")): v["value"]
              for v in payload["dataValues"]}
    soh, used, out = expected_march("H1", "MOR10")
    hc_soh, hc_used, hc_out = expected_march("HC2", "MOR10")
    assert values == {
        ("OrgUnitH001", "MorphineSOH", "HllvX50cXC0"): str(soh),
        ("OrgUnitH001", "MorphineUse", None): str(used),
        ("OrgUnitH001", "MorphineOut", None): str(out),
        ("OrgUnitHC02", "MorphineSOH", "HllvX50cXC0"): str(hc_soh),
        ("OrgUnitHC02", "MorphineUse", None): str(hc_used),
        ("OrgUnitHC02", "MorphineOut", None): str(hc_out),
    }
    assert all(v["period"] == "202603" for v in payload["dataValues"])
    assert result.unmapped_facilities == ["WH-C"]
    assert result.unmapped_items == ["GLOVE"]
    warnings = result.warnings()
    assert "facility WH-C has data but no org unit in the mapping: its values are not sent" in warnings
    assert "item GLOVE has data but no data elements in the mapping: its values are not sent" in warnings
    assert "mapping names facility ZZ9, which Dawa does not know" in warnings


def test_bad_mapping_names_every_problem():
    bad = {"orgUnits": {"H1": "short"}, "items": {"MOR10": {"consumption": {"dataElement": "MorphineUse",
                                                                          "coc": "x"},
                                                            "stock": "MorphineSOH"}},
           "extra": 1}
    with pytest.raises(MappingError) as failed:
        parse_mapping(bad, "m.json")
    assert failed.value.problems == [
        "m.json: extra: unknown key (expected dataSet, attributeOptionCombo, orgUnits, items, idScheme, "
        "dataElementIdScheme, orgUnitIdScheme, categoryOptionComboIdScheme)",
        "m.json: orgUnits.H1: 'short' is not a DHIS2 uid (a letter then 10 letters or digits); "
        "for codes set \"idScheme\": \"CODE\"",
        "m.json: items.MOR10.consumption: unknown key(s) coc",
        "m.json: items.MOR10.stock: unknown measure (expected stock_on_hand, consumption, stockout_days, "
        "opening, received, adjustment, ordered)",
    ]
    with pytest.raises(DawaError, match="YYYY-MM"):
        parse_period("2026-13")


def test_cli_writes_payload_and_lists_unmapped(sqlite_engine, tmp_path, monkeypatch):
    with session_factory(sqlite_engine)() as s:
        build_world(s)
        post(s, [entry(kind, q, facility=f, item=i, lot="", at=at, **extra) for f, kind, i, q, at, extra in MOVES])
        s.commit()
    from web.cli import common as cli
    from web.cli.main import app

    for console in (cli.console, cli.err):  # no line wrapping in what is checked below
        monkeypatch.setattr(console, "width", 400)

    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    out = tmp_path / "payload.json"
    url = sqlite_engine.url.render_as_string(hide_password=False)
    res = CliRunner().invoke(app, ["dhis2", "export", "--mapping", str(mapping), "--period", "2026-03",
                                   "--out", str(out), "--db", url], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(json.loads(out.read_text())["dataValues"]) == 6
    assert "warning: item GLOVE" in " ".join(res.stderr.split())
    mapping.write_text('{"orgUnits": {"H1": "bad"}, "items": {}}')
    res = CliRunner().invoke(app, ["dhis2", "export", "--mapping", str(mapping), "--period", "2026-03",
                                   "--out", str(out), "--db", url], catch_exceptions=False)
    assert res.exit_code == 2 and f"{mapping}: orgUnits.H1: 'bad' is not a DHIS2 uid" in " ".join(res.stderr.split())
