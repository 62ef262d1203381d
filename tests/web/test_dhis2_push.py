"""DHIS2: monthly reports and the ledger both feed the data values; mapping by uid or code; collision
and disagreement warnings; `dawa dhis2 push` and the scheduled job sending to a DHIS2 Web API on
loopback, its import summary (conflicts included) recorded and shown. Both databases."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from stock.importer import import_dataset
from stock.settings import Dhis2, get_settings
from tests.stock.test_reports import write as write_reports
from tests.web.dhis2_server import Dhis2Server
from tests.web.test_dhis2 import NOW, TRIPOLI, ledger  # noqa: F401 - the hand-built ledger of March 2026
from web.interop.dhis2 import export_data_value_set, parse_mapping
from web.interop.dhis2_push import previous_month, push, push_job
from web.interop.models import Dhis2Push

HEADERS = dict(facilities="code,name,region,kind,parent_code\n",
               items="code,name,atc_code,form,unit,controlled,max_dispense_quantity\n")
REPORTS = [
    "HC2,MOR10,2026-03,0,40,40,,0,4,100",     # agrees with the ledger
    "H1,MOR10,2026-03,40,50,100,-5,30,5,",    # closing 30 where the ledger says 35
    "H1,INSG,2026-03,10,5,4,,11,0,20",        # an item the ledger does not hold at H1: the report alone
]
MAPPING = {
    "orgUnits": {"H1": "OrgUnitH001", "HC2": "OrgUnitHC02"},
    "items": {
        "MOR10": {"stock_on_hand": {"dataElement": "MorphineSOH", "categoryOptionCombo": "HllvX50cXC0"},
                  "consumption": "MorphineUse", "stockout_days": "UnknownDE01"},
        "INSG": {"stock_on_hand": "InsulinSOH1", "opening": "InsulinOpn1", "received": "InsulinRcv1",
                 "ordered": "InsulinOrd1"},
    },
}
METADATA = {
    "dataElement": {"MorphineSOH": "MOR_SOH", "MorphineUse": "MOR_USE", "InsulinSOH1": "INS_SOH",
                    "InsulinOpn1": "INS_OPEN", "InsulinRcv1": "INS_REC", "InsulinOrd1": "INS_ORD"},
    "orgUnit": {"OrgUnitH001": "OU_H1", "OrgUnitHC02": "OU_HC2"},
    "categoryOptionCombo": {"HllvX50cXC0": "default"},
}


@pytest.fixture
def world(ledger, tmp_path):  # noqa: F811
    import_dataset(ledger, write_reports(tmp_path / "reports", REPORTS, **HEADERS))
    ledger.commit()
    return ledger


@pytest.fixture
def server():
    s = Dhis2Server(METADATA)
    yield s
    s.close()


def settings_for(server: Dhis2Server, **kw):
    return get_settings().model_copy(update={"dhis2": Dhis2(url=server.url, token=server.token, **kw)})


def values(payload: dict) -> dict[tuple[str, str], str]:
    return {(v["orgUnit"], v["dataElement"]): v["value"] for v in payload["dataValues"]}


def test_reports_and_ledger_both_feed_the_values_the_ledger_winning(world):
    result = export_data_value_set(world, parse_mapping(MAPPING), "2026-03", now=NOW, default_zone=TRIPOLI.key)
    got = values(result.payload)
    assert got[("OrgUnitH001", "MorphineSOH")] == "35"              # the ledger's, not the report's 30
    assert got[("OrgUnitHC02", "MorphineSOH")] == "0"
    assert (got[("OrgUnitH001", "InsulinSOH1")], got[("OrgUnitH001", "InsulinOpn1")],
            got[("OrgUnitH001", "InsulinRcv1")], got[("OrgUnitH001", "InsulinOrd1")]) == ("11", "10", "5", "20")
    assert "H1 MOR10 2026-03: stock_on_hand is 35 by the ledger and 30 by the monthly report; the ledger's is sent" \
        in result.warnings()
    assert not any("HC2 MOR10" in w for w in result.warnings())
    # A facility that only reports (no ledger at all) still sends: the Côte d'Ivoire case.
    only_reports = export_data_value_set(world, parse_mapping(MAPPING), "2026-03", now=NOW, facility_codes={"H1"},
                                         default_zone=TRIPOLI.key)
    assert ("OrgUnitH001", "InsulinSOH1") in values(only_reports.payload)


def test_mapping_by_code_and_collisions_warned(world):
    by_code = {"idScheme": "CODE", "orgUnits": {"H1": "OU_H1"},
               "items": {"MOR10": {"consumption": "MOR_USE", "stock_on_hand": "MOR_USE"},
                         "INSG": {"stock_on_hand": {"dataElement": "INS_SOH", "categoryOptionCombo": "default"}}}}
    result = export_data_value_set(world, parse_mapping(by_code), "2026-03", now=NOW, default_zone=TRIPOLI.key)
    assert result.payload["idScheme"] == "CODE"
    assert values(result.payload)[("OU_H1", "INS_SOH")] == "11"
    assert "MOR10.stock_on_hand and MOR10.consumption are both mapped to data element MOR_USE: DHIS2 keeps one " \
           "value per org unit and period, so one overwrites the other" in result.warnings()
    with pytest.raises(Exception, match="is not a DHIS2 code"):
        parse_mapping({"idScheme": "CODE", "orgUnits": {"H1": "x" * 51}, "items": {}})
    with pytest.raises(Exception, match="is not an id scheme"):
        parse_mapping({"idScheme": "NAME", "orgUnits": {}, "items": {}})


@pytest.mark.parametrize("legacy", [False, True], ids=["web-message", "bare-summary"])
def test_push_records_the_import_summary_and_its_conflicts(world, server, legacy):
    server.legacy = legacy
    settings = settings_for(server)
    mapping = parse_mapping(MAPPING)
    first = push(world, settings, mapping, "2026-03", pushed_by="admin", now=NOW)
    world.commit()
    r = first.record
    assert (r.status, r.sent, r.imported, r.updated, r.ignored) == ("WARNING", 10, 8, 0, 2)
    assert r.server == server.url and r.pushed_by == "admin"
    (conflict,) = json.loads(r.conflicts)
    assert conflict["object"] == "UnknownDE01" and conflict["indexes"] == [6, 9]
    assert first.lines()[1] == "conflict: UnknownDE01: Data element not found or not accessible: `UnknownDE01`"
    assert server.stored[("MorphineSOH", "202603", "OrgUnitH001", "HllvX50cXC0", None)] == "35"
    assert server.requests[0]["params"] == {"importStrategy": "CREATE_AND_UPDATE"}
    again = push(world, settings, mapping, "2026-03", pushed_by="admin", now=NOW).record
    assert (again.imported, again.updated, again.ignored) == (0, 8, 2)


def test_push_by_code_sends_the_id_schemes(world, server):
    by_code = {"idScheme": "CODE", "orgUnits": {"H1": "OU_H1"}, "items": {"INSG": {"stock_on_hand": "INS_SOH"}}}
    r = push(world, settings_for(server), parse_mapping(by_code), "2026-03", pushed_by="admin", now=NOW).record
    assert (r.status, r.imported) == ("SUCCESS", 1) and r.conflicts is None
    assert server.requests[-1]["params"]["idScheme"] == "CODE"


def test_refused_credentials_and_unreachable_servers_are_recorded_as_failed(world, server):
    mapping = parse_mapping(MAPPING)
    bad = get_settings().model_copy(update={"dhis2": Dhis2(url=server.url, username="dawa", password="wrong")})
    r = push(world, bad, mapping, "2026-03", pushed_by="admin", now=NOW).record
    assert (r.status, r.message) == ("FAILED", "DHIS2 refused the credentials (HTTP 401)")
    basic = get_settings().model_copy(update={"dhis2": Dhis2(url=server.url, username="dawa",
                                                              password="district-2026")})
    assert push(world, basic, mapping, "2026-03", pushed_by="admin", now=NOW).record.status == "WARNING"
    url = server.url
    server.close()
    gone = get_settings().model_copy(update={"dhis2": Dhis2(url=url, token="t")})
    r = push(world, gone, mapping, "2026-03", pushed_by="admin", now=NOW).record
    assert r.status == "FAILED" and r.message.startswith(f"could not reach {url}/api/dataValueSets")
    world.commit()
    assert [p.status for p in world.scalars(select(Dhis2Push).order_by(Dhis2Push.id))] == ["FAILED", "WARNING",
                                                                                          "FAILED"]


def test_scheduled_job_pushes_last_month(world, server, tmp_path):
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    early_april = datetime(2026, 4, 5, 3, tzinfo=timezone.utc)
    assert previous_month(early_april, "Africa/Tripoli") == "2026-03"
    result = push_job(world, settings_for(server, mapping=str(mapping)), early_april)
    assert result.notes[0].startswith("DHIS2 WARNING: 10 value(s) sent for 2026-03; 8 imported")
    assert result.errors == ["conflict: UnknownDE01: Data element not found or not accessible: `UnknownDE01`"]
    assert world.scalars(select(Dhis2Push)).one().pushed_by == "scheduler"
    idle = push_job(world, get_settings(), early_april)
    assert idle.notes == ["DHIS2 push not configured (dhis2.url and dhis2.mapping): nothing sent"]


def test_cli_push_shows_conflicts_and_lists_pushes(sqlite_engine, server, tmp_path, monkeypatch):
    from stock.db import session_factory
    from tests.stock.builders import build_world
    from web.cli import common as cli
    from web.cli.main import app

    with session_factory(sqlite_engine)() as s:
        build_world(s)
        import_dataset(s, write_reports(tmp_path / "reports", REPORTS, **HEADERS))
        s.commit()
    for console in (cli.console, cli.err):
        monkeypatch.setattr(console, "width", 400)
    monkeypatch.setenv("DAWA_DHIS2__URL", server.url)
    monkeypatch.setenv("DAWA_DHIS2__TOKEN", server.token)
    get_settings.cache_clear()
    try:
        mapping = tmp_path / "mapping.json"
        mapping.write_text(json.dumps(MAPPING))
        url = sqlite_engine.url.render_as_string(hide_password=False)
        res = CliRunner().invoke(app, ["dhis2", "push", "--mapping", str(mapping), "--period", "2026-03",
                                       "--operator", "ministry-sync", "--db", url], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert "DHIS2 WARNING: 10 value(s) sent for 2026-03; 8 imported, 0 updated, 2 ignored" in res.stdout
        assert "conflict: UnknownDE01: Data element not found" in res.stderr
        res = CliRunner().invoke(app, ["dhis2", "pushes", "--db", url], catch_exceptions=False)
        assert "2026-03 WARNING by ministry-sync" in res.stdout and "conflict: UnknownDE01" in res.stdout
    finally:
        get_settings.cache_clear()
