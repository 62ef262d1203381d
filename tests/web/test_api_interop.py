"""FHIR bundles and spreadsheet exports through the API, against the live app on both databases,
within the caller's scope."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import func, select

from stock.models import LedgerEntry
from tests.web.interop_helpers import allow_health_cards
from tests.web.test_app_api import bearer, issue_token


def client(live_server, username):
    return live_server.client(headers=bearer(issue_token(live_server, username)))


def test_fhir_bundle_export_is_limited_to_the_callers_scope(live_server):
    pharm = client(live_server, "pharm_h1")
    r = pharm.get("/api/v1/fhir/bundle")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]
    text = json.dumps(bundle)
    assert "H1" in text and "HC2" not in text and "B1" not in text
    assert pharm.get("/api/v1/fhir/bundle", params={"facility": "HC2"}).status_code == 403
    assert pharm.get("/api/v1/fhir/bundle", params={"version": "R9"}).status_code in (400, 422)
    regional = client(live_server, "manager_tripoli")
    r = regional.get("/api/v1/fhir/bundle")
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["expression"] == ["facility"]
    assert regional.get("/api/v1/fhir/bundle", params={"facility": "HC2"}).status_code == 200
    everything = json.dumps(client(live_server, "admin").get("/api/v1/fhir/bundle", params={"version": "R5"}).json())
    assert "B1" in everything and "HC2" in everything


def _dispense_id(live_server) -> str:
    with live_server.Session() as s:
        return s.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.kind == "dispense")).one()


def _count(live_server) -> int:
    with live_server.Session() as s:
        return s.scalar(select(func.count()).select_from(LedgerEntry))


def test_fhir_import_is_idempotent_scoped_and_all_or_nothing(live_server):
    allow_health_cards(live_server)
    pharm = client(live_server, "pharm_h1")
    text = pharm.get("/api/v1/fhir/bundle", params={"patient_ids": "card"}).text
    before = _count(live_server)
    again = pharm.post("/api/v1/fhir/bundle", content=text, headers={"content-type": "application/fhir+json"})
    assert again.status_code == 200, again.text
    assert again.json()["added"] == 0 and again.json()["already_present"] >= 1
    # The same dispense under a new id is a new movement at H1: another facility's staff are refused.
    fresh = text.replace(_dispense_id(live_server), "api-fhir-new-1")
    r = client(live_server, "pharm_hc2").post("/api/v1/fhir/bundle", content=fresh)
    assert r.status_code == 403 and "outside your scope" in r.json()["issue"][0]["diagnostics"]
    assert _count(live_server) == before
    r = pharm.post("/api/v1/fhir/bundle", content=fresh)
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    assert _count(live_server) == before + 1
    # A broken bundle: every problem listed, nothing stored.
    r = pharm.post("/api/v1/fhir/bundle", content=json.dumps({"resourceType": "Patient"}))
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert (issue["severity"], issue["code"], issue["expression"]) == ("error", "invalid", ["Bundle.resourceType"])
    assert pharm.post("/api/v1/fhir/bundle", content=b"{not json").status_code == 422
    assert client(live_server, "auditor").post("/api/v1/fhir/bundle", content=fresh).status_code == 403
    assert _count(live_server) == before + 1


def test_spreadsheet_exports_within_scope(live_server):
    pharm = client(live_server, "pharm_h1")
    r = pharm.get("/api/v1/export/on-hand.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    body = "\n".join(",".join(x) for x in rows[1:])
    assert "H1" in body and "HC2" not in body and "B1" not in body
    x = pharm.get("/api/v1/export/on-hand.xlsx")
    assert x.status_code == 200 and x.content[:2] == b"PK"
    assert x.headers["content-type"].startswith("application/vnd.openxmlformats")
    card = pharm.get("/api/v1/export/stock-card.csv", params={"facility": "H1", "item": "MOR10"})
    assert card.status_code == 200 and "RX1" in card.text
    assert pharm.get("/api/v1/export/on-hand.csv", params={"facility": "HC2"}).status_code == 403
    assert pharm.get("/api/v1/export/flags.csv").status_code == 403
    assert pharm.get("/api/v1/export/on-hand.pdf").json()["error"]["field"] == "format"
    assert pharm.get("/api/v1/export/nothing.csv").json()["error"]["field"] == "kind"
    regional = client(live_server, "auditor_tripoli")
    body = regional.get("/api/v1/export/on-hand.csv").text
    assert "HC2" in body and "B1" not in body
    assert regional.get("/api/v1/export/flags.csv").status_code == 200


DHIS2_MAPPING = {"orgUnits": {"H1": "OrgUnitH001", "HC2": "OrgUnitHC02", "B1": "OrgUnitB001"},
                 "items": {"MOR10": {"stock_on_hand": "MorphineSOH", "consumption": "MorphineUse",
                                     "stockout_days": "MorphineOut"},
                           "INSG": {"stock_on_hand": "InsulinSOH1"}}}


def _dhis2_values(response) -> dict:
    assert response.status_code == 200, response.text
    return {(v["orgUnit"], v["dataElement"]): v["value"] for v in response.json()["payload"]["dataValues"]}


def test_dhis2_payload_within_scope(live_server):
    body = json.dumps(DHIS2_MAPPING)
    everything = _dhis2_values(client(live_server, "admin").post("/api/v1/dhis2/2026-03", content=body))
    assert everything[("OrgUnitH001", "MorphineSOH")] == "90"
    assert everything[("OrgUnitH001", "MorphineUse")] == "10"
    assert everything[("OrgUnitHC02", "MorphineSOH")] == "50"
    assert everything[("OrgUnitB001", "InsulinSOH1")] == "20"
    # A pharmacist's payload holds their facility only, and the warnings name no other facility.
    pharm = client(live_server, "pharm_h1")
    r = pharm.post("/api/v1/dhis2/2026-03", content=body)
    assert set(_dhis2_values(r)) == {("OrgUnitH001", "MorphineSOH"), ("OrgUnitH001", "MorphineUse"),
                                     ("OrgUnitH001", "MorphineOut")}
    assert not any("HC2" in w or "B1" in w for w in r.json()["warnings"])
    assert pharm.post("/api/v1/dhis2/2026-03", params={"facility": "HC2"}, content=body).status_code == 403
    regional = _dhis2_values(client(live_server, "auditor_tripoli").post("/api/v1/dhis2/2026-03", content=body))
    assert {org for org, _ in regional} == {"OrgUnitH001", "OrgUnitHC02"}
    # Bad requests name their field; nothing is stored either way.
    r = pharm.post("/api/v1/dhis2/2026-13", content=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == "period"
    r = pharm.post("/api/v1/dhis2/2026-03", content=b"{not json")
    assert r.status_code == 422 and r.json()["error"]["field"] == "mapping"
    r = pharm.post("/api/v1/dhis2/2026-03", content=json.dumps({"orgUnits": {"H1": "short"}, "items": {}}))
    assert r.status_code == 422
    assert "orgUnits.H1" in r.json()["error"]["problems"][0]["message"]


def test_fhir_import_records_the_caller_whatever_performer_the_bundle_names(live_server):
    """Spoofed authorship (regression): the performer names another Dawa user; the ledger names
    the authenticated caller, and the named performer is kept as the source's user only."""
    from stock.settings import get_settings
    from web.interop.models import ImportProvenance

    system = get_settings().fhir
    allow_health_cards(live_server)
    pharm = client(live_server, "pharm_h1")
    bundle = pharm.get("/api/v1/fhir/bundle", params={"patient_ids": "card"}).json()
    md = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationDispense")
    md["id"], md["identifier"] = "spoof-1", []
    md["performer"] = [{"actor": {"identifier": {"system": system.user_system, "value": "admin"}}}]
    bundle["entry"] = [{"resource": md}]
    r = pharm.post("/api/v1/fhir/bundle", json=bundle)
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    with live_server.Session() as s:
        e = s.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == "fhir-spoof-1")).one()
        assert e.recorded_by == "pharm_h1"
        prov = s.scalars(select(ImportProvenance).where(ImportProvenance.entry_id == "fhir-spoof-1")).one()
        assert (prov.source_user, prov.imported_by) == ("admin", "pharm_h1")


def test_every_fhir_route_error_is_an_operation_outcome(live_server):
    anonymous = live_server.client()
    for method, path in (("GET", "/api/v1/fhir/bundle"), ("POST", "/api/v1/fhir/bundle")):
        r = anonymous.request(method, path, content=b"{}")
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/fhir+json")
        assert r.json()["issue"][0]["code"] == "login"
    pharm = client(live_server, "pharm_h1")
    for params, status, code in ((({"facility": "HC2"}), 403, "forbidden"), ({"facility": "NOPE"}, 404, "not-found"),
                                 ({"version": "R9"}, 400, "invalid"), ({"since": "yesterday"}, 422, "invalid")):
        r = pharm.get("/api/v1/fhir/bundle", params=params)
        assert (r.status_code, r.json()["resourceType"], r.json()["issue"][0]["code"]) == \
            (status, "OperationOutcome", code), (params, r.text)
    r = client(live_server, "auditor").post("/api/v1/fhir/bundle", content=b"{}")
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"
