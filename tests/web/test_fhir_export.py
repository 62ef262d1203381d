"""FHIR export as a server loads it: transfer status following the real state, incremental pulls by
recording time (late entries, later reversals and receipts included), GTIN, serial and checked ATC
codings, monthly reports as MeasureReport (R4) / InventoryReport (R5), every required binding of
what Dawa emits checked against a table transcribed from the specification, and the whole small
sample validated by fhir.resources. Both databases."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, update

from stock.importer import import_dataset
from stock.ledger import post, reverse
from stock.models import Item
from stock.settings import get_settings
from tests.stock.builders import T0, build_world, entry
from tests.stock.test_reports import write as write_reports
from tests.web.interop_helpers import import_small
from tests.web.test_fhir import patient_key, validate  # noqa: F401 - the install's patient key, for every test
from web.interop.fhir import export_bundle, write_bundle

DAY = timedelta(days=1)
SYNC = datetime(2026, 3, 10, tzinfo=timezone.utc)
"""The last sync: everything below was recorded before it, unless said otherwise."""


@pytest.fixture
def world(session):
    build_world(session)
    session.execute(update(Item).where(Item.code == "MOR10").values(gtin="04006381333931"))
    session.execute(update(Item).where(Item.code == "INSG").values(atc_code="NOT-ATC!"))
    post(session, [
        entry("receipt", 500, entry_id="r1", counterparty_code="PHARMA LTD", document_number="GRN-1"),
        entry("receipt", 40, item="INSG", lot="", entry_id="r2"),
        entry("dispense", 1, entry_id="d-serial", serial_number="PK0001", at=T0 + timedelta(hours=1)),
        entry("dispense", 2, item="INSG", lot="", entry_id="d-insg", at=T0 + timedelta(hours=2)),
        entry("dispense", 3, entry_id="d-old", at=T0 + timedelta(hours=3)),
        entry("transfer_out", 100, entry_id="t-out", counterparty_code="HC2", document_number="WB-7",
              at=T0 + timedelta(hours=4)),
    ], now=SYNC - DAY)
    session.commit()
    return session


def movements(bundle: dict) -> dict[str, dict]:
    return {e["resource"]["identifier"][0]["value"]: e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] in ("MedicationDispense", "SupplyDelivery", "InventoryReport")}


def test_transfer_status_follows_its_receipt_and_incremental_pulls_go_by_recording_time(world):
    before = movements(export_bundle(world, settings=get_settings(), version="R5").bundle)
    assert before["t-out"]["status"] == "in-progress"
    assert movements(export_bundle(world, settings=get_settings(), since=SYNC).bundle) == {}
    # After the sync: HC2 receives the waybill, a dispense of last week is entered late, d-old is reversed.
    post(world, [entry("transfer_in", 100, facility="HC2", entry_id="t-in", counterparty_code="H1",
                       document_number="WB-7", at=T0 + timedelta(hours=6)),
                 entry("dispense", 4, entry_id="d-late", at=T0 + timedelta(hours=5))], now=SYNC + DAY)
    reverse(world, "d-old", reason="recorded twice", by="u2", new_id="rev-d-old", now=SYNC + DAY)
    world.commit()
    for version in ("R4", "R5"):
        pulled = export_bundle(world, settings=get_settings(), version=version, since=SYNC).bundle
        validate(pulled, version)
        got = movements(pulled)
        assert set(got) == {"t-in", "d-late", "t-out", "d-old"}, (version, set(got))
        assert got["t-out"]["status"] == "completed" and got["t-in"]["status"] == "completed"
        assert got["d-old"]["status"] == "entered-in-error"
        assert got["d-late"]["whenHandedOver"] < "2026-03-02"    # moved long before it was recorded
    # The window's end bounds it too: a pull up to the sync sees none of it.
    assert set(movements(export_bundle(world, settings=get_settings(), since=SYNC - 2 * DAY, until=SYNC).bundle)) == \
        {"r1", "r2", "d-serial", "d-insg", "d-old", "t-out"}


def test_incremental_pulls_start_from_the_recording_time_index(world):
    """Each part of a "since the last sync" pull (recorded in the window, reversed in it, received
    in it) is looked up through ix_ledger_entry_recorded_at, not by reading the whole ledger.
    PostgreSQL weighs table sizes, so there the plan is asked with sequential scans discouraged:
    what is checked is that the query can use the index at all (an OR of subqueries could not)."""
    bind = world.get_bind()
    statements = []
    listen = lambda conn, cur, stmt, params, ctx, many: statements.append((stmt, params))  # noqa: E731
    event.listen(bind, "before_cursor_execute", listen)
    try:
        export_bundle(world, settings=get_settings(), since=SYNC, kinds=["dispense", "transfer_out"])
    finally:
        event.remove(bind, "before_cursor_execute", listen)
    stmt, params = next((s, p) for s, p in statements if "recorded_at >=" in s)
    conn = world.connection()
    if bind.dialect.name == "sqlite":
        plan = " | ".join(r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params))
    else:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = " | ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + stmt, params))
    assert plan.count("ix_ledger_entry_recorded_at") >= 3, plan
    world.rollback()


def test_gtin_serial_batch_and_only_real_atc_codes(world):
    for version in ("R4", "R5"):
        got = movements(export_bundle(world, settings=get_settings(), version=version).bundle)
        med = got["d-serial"]["contained"][0]
        codings = {c["system"]: c["code"] for c in med["code"]["coding"]}
        assert codings["https://www.gs1.org/gtin"] == "04006381333931"
        assert codings["http://www.whocc.no/atc"] == "N02AA01"
        assert med["identifier"] == [{"system": "https://id.gs1.org",
                                      "value": "https://id.gs1.org/01/04006381333931/21/PK0001"}]
        assert med["batch"] == {"lotNumber": "L1", "expirationDate": "2028-01-31"}
        insulin = got["d-insg"]["contained"][0]["code"]["coding"]
        assert [c["system"] for c in insulin] == ["urn:dawa:item"]      # NOT-ATC! is not an ATC code
        assert got["d-insg"]["quantity"]["code"] == "mL"


def test_monthly_reports_as_measure_report_r4_and_inventory_report_r5(session, tmp_path):
    import_dataset(session, write_reports(tmp_path / "d"))
    session.commit()
    r4 = export_bundle(session, settings=get_settings(), version="R4", kinds=["stock_report"]).bundle
    validate(r4, "R4")
    reports = [e["resource"] for e in r4["entry"] if e["resource"]["resourceType"] == "MeasureReport"]
    assert len(reports) == 4
    march = next(r for r in reports if r["period"]["start"] == "2019-03-01")
    assert march["period"]["end"] == "2019-03-31" and march["status"] == "complete" and march["type"] == "summary"
    scores = {g["code"]["coding"][0]["code"]: g["measureScore"]["value"] for g in march["group"]}
    assert scores == {"opening": 75, "received": 0, "consumed": 30, "closing": 90}   # as reported, unbalanced
    assert march["subject"]["identifier"]["value"] == "H1"
    r5 = export_bundle(session, settings=get_settings(), version="R5", kinds=["stock_report"]).bundle
    validate(r5, "R5")
    inv = [e["resource"] for e in r5["entry"] if e["resource"]["resourceType"] == "InventoryReport"]
    jan = next(r for r in inv if r["identifier"][0]["value"] == "HC2/INJ/2019-01/1")
    items = {i["category"]["coding"][0]["code"]: i["quantity"]["value"] for i in jan["inventoryListing"][0]["item"]}
    assert items == {"opening": 10.5, "received": 0, "consumed": 2.25, "closing": 8.25, "ordered": 5}
    assert "stockout days: 3" in jan["note"][0]["text"]


# Required bindings of the elements Dawa emits, transcribed from the FHIR specification's resource
# pages (R4 4.0.1: hl7.org/fhir/R4; R5 5.0.0: hl7.org/fhir/R5). Each path maps to the codes of the
# bound value set; for a CodeableConcept also the code system.
COMMON = {
    "Bundle.type": {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                    "history", "searchset", "collection"},
    "Bundle.entry.request.method": {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"},
    "MedicationDispense.status": {"preparation", "in-progress", "cancelled", "on-hold", "completed",
                                  "entered-in-error", "stopped", "declined", "unknown"},
    "SupplyDelivery.status": {"in-progress", "completed", "abandoned", "entered-in-error"},
    "MedicationRequest.intent": {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
                                 "instance-order", "option"},
    "Location.status": {"active", "suspended", "inactive"},
    "Location.mode": {"instance", "kind"},
}
REQUIRED = {
    "R4": {**COMMON,
           "MedicationRequest.status": {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped",
                                        "draft", "unknown"},
           "SupplyDelivery.type": ("http://terminology.hl7.org/CodeSystem/supply-item-type", {"medication", "device"}),
           "MeasureReport.status": {"complete", "pending", "error"},
           "MeasureReport.type": {"individual", "subject-list", "summary", "data-collection"}},
    "R5": {**COMMON,
           "MedicationRequest.status": {"active", "on-hold", "ended", "stopped", "completed", "cancelled",
                                        "entered-in-error", "draft", "unknown"},
           "SupplyDelivery.type": ("http://hl7.org/fhir/supplydelivery-supplyitemtype",
                                   {"medication", "device", "biologicallyderivedproduct"}),
           "InventoryReport.status": {"draft", "requested", "active", "entered-in-error"},
           "InventoryReport.countType": {"snapshot", "difference"}},
}


def _values(node, path: list[str]):
    if not path:
        yield node
        return
    child = node.get(path[0]) if isinstance(node, dict) else None
    for c in (child if isinstance(child, list) else [child] if child is not None else []):
        yield from _values(c, path[1:])


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_every_required_binding_holds(world, tmp_path, version):
    import_dataset(world, write_reports(tmp_path / "d", ["H1,MOR10,2026-02,10,500,20,-1,489,0,100"],
                                                facilities=REPORT_FACILITIES, items=REPORT_ITEMS))
    post(world, entry("count", 496, entry_id="c1", at=T0 + timedelta(days=1)), now=SYNC)
    world.commit()
    bundle = export_bundle(world, settings=get_settings(), version=version).bundle
    validate(bundle, version)
    checked = 0
    for path, binding in REQUIRED[version].items():
        rtype, *rest = path.split(".")
        roots = [bundle] if rtype == "Bundle" else [e["resource"] for e in bundle["entry"]
                                                      if e["resource"]["resourceType"] == rtype]
        for root in roots:
            for value in _values(root, rest):
                if isinstance(binding, tuple):
                    system, codes = binding
                    for coding in value["coding"]:
                        assert (coding["system"], coding["code"] in codes) == (system, True), (path, coding)
                else:
                    assert value in binding, (path, value)
                checked += 1
    emitted = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"MedicationDispense", "SupplyDelivery", "Location", "Organization", "Patient"} <= emitted
    assert ("MeasureReport" if version == "R4" else "InventoryReport") in emitted
    assert checked > 20


REPORT_FACILITIES = "code,name,region,kind,parent_code\n"
REPORT_ITEMS = "code,name,atc_code,form,unit,controlled,max_dispense_quantity\n"


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_the_small_sample_streams_and_validates_resource_by_resource(session, version):
    import_small(session)
    out = io.BytesIO()
    result = write_bundle(session, out, settings=get_settings(), version=version)
    bundle = json.loads(out.getvalue())
    assert bundle["type"] == "transaction" and len(bundle["entry"]) == sum(result.counts.values())
    validate(bundle, version)
    kept = export_bundle(session, settings=get_settings(), version=version,
                         now=datetime(2026, 1, 1, tzinfo=timezone.utc)).bundle
    assert [e["fullUrl"] for e in kept["entry"]] == [e["fullUrl"] for e in bundle["entry"]]
    assert result.counts["MedicationDispense"] > 1000 and result.counts["Patient"] > 10
