"""FHIR exchange: output valid against the fhir.resources models, round trip, all-or-nothing import."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fhir.resources import get_fhir_model_class as r5_model
from fhir.resources.bundle import Bundle as BundleR5
from fhir.resources.R4B import get_fhir_model_class as r4_model
from fhir.resources.R4B.bundle import Bundle as BundleR4
from sqlalchemy import func, select
from typer.testing import CliRunner

from stock.ledger import post, reverse
from stock.db import session_factory
from stock.errors import DawaError
from stock.models import Facility, Item, LedgerEntry, Lot, Patient
from stock.pseudonyms import NoPatientKey, pseudonym
from stock.settings import get_settings
from tests.stock.builders import T0, build_world, entry
from tests.web.interop_helpers import OtherSession, import_master_data, import_small, other_engine  # noqa: F401
from web.interop.fhir import FhirImportFailed, export_bundle, import_bundle

VALIDATORS = {"R4": (BundleR4, r4_model), "R5": (BundleR5, r5_model)}
PATIENT_KEY = "fhir-test-patient-key"


@pytest.fixture(autouse=True)
def patient_key(monkeypatch):
    """The install's patient key, which exports pseudonymise patients under."""
    monkeypatch.setenv("DAWA_PATIENT_ID_KEY", PATIENT_KEY)
    get_settings.cache_clear()
    yield PATIENT_KEY
    get_settings.cache_clear()


def validate(bundle: dict, version: str) -> None:
    """The whole bundle, and each resource by its own model, as fhir.resources reads them."""
    bundle_model, model_of = VALIDATORS[version]
    bundle_model.model_validate(bundle)
    for e in bundle["entry"]:
        model_of(e["resource"]["resourceType"]).model_validate(e["resource"])


def test_patients_are_pseudonymous_by_default_and_cards_only_when_asked(world, monkeypatch):
    """The Patient, every subject and every id derived from them carry the keyed pseudonym; the
    card appears only in an export asked for cards; no key, no pseudonymous export."""
    card, alias = "LY0000000001", pseudonym("LY0000000001", PATIENT_KEY)
    systems = get_settings().fhir
    text = export_bundle(world, settings=get_settings(), version="R5").to_json()
    assert card not in text and alias in text
    bundle = json.loads(text)
    (patient,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["resource"]["identifier"] == [{"system": systems.pseudonym_system, "value": alias}]
    assert patient["request"]["url"] == f"Patient?identifier={systems.pseudonym_system}|{alias}"
    subjects = {json.dumps(e["resource"]["subject"], sort_keys=True) for e in bundle["entry"]
                if "subject" in e["resource"] and e["resource"]["resourceType"] != "MeasureReport"}
    assert subjects == {json.dumps({"reference": patient["fullUrl"], "type": "Patient",
                                    "identifier": {"system": systems.pseudonym_system, "value": alias}},
                                   sort_keys=True)}
    other_key = export_bundle(world, settings=get_settings(), patient_key="another-install").to_json()
    assert alias not in other_key and pseudonym(card, "another-install") in other_key
    clear = export_bundle(world, settings=get_settings(), version="R5", patient_ids="card").bundle
    (patient,) = [e["resource"] for e in clear["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["identifier"] == [{"system": systems.patient_system, "value": card}]
    validate(clear, "R5")
    with pytest.raises(DawaError, match="pseudonym or card"):
        export_bundle(world, settings=get_settings(), patient_ids="names")
    monkeypatch.delenv("DAWA_PATIENT_ID_KEY")
    get_settings.cache_clear()
    with pytest.raises(NoPatientKey):
        export_bundle(world, settings=get_settings())


def dispensing_rows(session, *, exclude_reversed: bool = True) -> list[tuple]:
    """The ledger's dispensing rows in the terms the contract states them."""
    reversed_ids = select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))
    stmt = (select(LedgerEntry.kind, LedgerEntry.facility_id, LedgerEntry.item_id, Lot.lot_number,
                   LedgerEntry.quantity, Patient.health_card_id, LedgerEntry.prescription_ref,
                   LedgerEntry.occurred_at, LedgerEntry.entry_id)
            .join(Lot, Lot.id == LedgerEntry.lot_id)
            .join(Patient, Patient.id == LedgerEntry.patient_id)
            .where(LedgerEntry.kind == "dispense"))
    if exclude_reversed:
        stmt = stmt.where(LedgerEntry.entry_id.not_in(reversed_ids))
    codes = dict(session.execute(select(Facility.id, Facility.code)).all())
    items = dict(session.execute(select(Item.id, Item.code)).all())
    return sorted((k, codes[f], items[i], lot, q, card, rx, at, eid)
                  for k, f, i, lot, q, card, rx, at, eid in session.execute(stmt))


@pytest.fixture
def world(session):
    build_world(session)
    post(session, [
        entry("receipt", 500, facility="H1", entry_id="r1", counterparty_code="PHARMA LTD",
              document_number="GRN-1"),
        entry("receipt", 40, facility="H1", item="INSG", lot="", entry_id="r2", at=T0 + timedelta(minutes=5)),
        entry("dispense", 30, facility="H1", entry_id="d1", prescription_id="RX1", at=T0 + timedelta(hours=1)),
        entry("dispense", 2.5, facility="H1", item="INSG", lot="", entry_id="d2", at=T0 + timedelta(hours=2)),
        entry("dispense", 10, facility="H1", entry_id="d3", at=T0 + timedelta(hours=3)),
        entry("transfer_out", 100, facility="H1", entry_id="t1", counterparty_code="HC2",
              document_number="WB-7", at=T0 + timedelta(hours=4)),
        entry("transfer_in", 100, facility="HC2", entry_id="t2", counterparty_code="H1",
              document_number="WB-7", at=T0 + timedelta(hours=6)),
        entry("count", 355, facility="H1", entry_id="c1", at=T0 + timedelta(days=1)),
    ])
    reverse(session, "d3", reason="recorded twice", by="u2", new_id="rev-d3",
            now=T0 + timedelta(days=2))
    session.commit()
    return session


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_export_validates_against_the_fhir_models(world, version):
    result = export_bundle(world, settings=get_settings(), version=version)
    bundle = json.loads(result.to_json())
    validate(bundle, version)
    by_type: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    assert bundle["type"] == "transaction"
    for e in bundle["entry"]:  # every entry a conditional update on the resource's first identifier
        ident = e["resource"]["identifier"][0]
        assert e["request"]["method"] == "PUT" and ident["system"]
        assert e["request"]["url"].startswith(f'{e["resource"]["resourceType"]}?identifier={ident["system"]}|')
    assert len(by_type["MedicationDispense"]) == 3
    assert sorted(o["identifier"][0]["value"] for o in by_type["Organization"]) == ["H1", "HC2"]
    assert sorted(o["identifier"][0]["value"] for o in by_type["Location"]) == ["H1", "HC2"]
    assert [p["identifier"][0]["value"] for p in by_type["Patient"]] == [pseudonym("LY0000000001", PATIENT_KEY)]
    assert len(by_type["SupplyDelivery"]) == 4
    assert len(by_type["MedicationRequest"]) == 1
    if version == "R5":
        assert len(by_type["InventoryReport"]) == 1
        report = by_type["InventoryReport"][0]
        assert report["inventoryListing"][0]["item"][0]["quantity"]["value"] == 355
        assert result.skipped == []
    else:
        assert "InventoryReport" not in by_type
        assert result.skipped and "1 physical count" in result.skipped[0] and "R5" in result.skipped[0]

    d1 = next(r for r in by_type["MedicationDispense"] if r["id"] == "d1")
    system = get_settings().fhir
    assert d1["subject"]["identifier"] == {"system": system.pseudonym_system,
                                           "value": pseudonym("LY0000000001", PATIENT_KEY)}
    assert d1["location"]["identifier"]["value"] == "H1"
    assert d1["quantity"] == {"value": 30, "unit": "tablet", "system": "http://unitsofmeasure.org", "code": "{tablet}"}
    assert {"system": "http://www.whocc.no/atc", "code": "N02AA01"} in d1["contained"][0]["code"]["coding"]
    assert d1["contained"][0]["batch"] == {"lotNumber": "L1", "expirationDate": "2028-01-31"}
    rx = by_type["MedicationRequest"][0]
    rx_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is rx or e["resource"] == rx)
    assert d1["authorizingPrescription"][0]["reference"] == rx_url
    assert rx["dispenseRequest"]["quantity"]["value"] == 30
    assert rx["identifier"][0]["value"] == "RX1"
    if version == "R4":
        assert "medicationReference" in d1 and "medication" not in d1
    else:
        assert d1["medication"]["reference"]["reference"] == "#med"
    d2 = next(r for r in by_type["MedicationDispense"] if r["id"] == "d2")
    assert d2["quantity"]["value"] == 2.5 and "batch" not in d2["contained"][0]
    d3 = next(r for r in by_type["MedicationDispense"] if r["id"] == "d3")
    assert d3["status"] == "entered-in-error" and "rev-d3" in d3["note"][0]["text"]
    deliveries = {r["id"]: r for r in by_type["SupplyDelivery"]}
    assert deliveries["t1"]["status"] == "completed"  # HC2 recorded its receipt (t2, waybill WB-7)
    assert deliveries["t2"]["status"] == "completed"
    supply_type = {"R4": "http://terminology.hl7.org/CodeSystem/supply-item-type",
                   "R5": "http://hl7.org/fhir/supplydelivery-supplyitemtype"}[version]
    assert deliveries["t1"]["type"]["coding"] == [{"system": supply_type, "code": "medication"}]
    assert deliveries["t1"]["destination"]["identifier"]["value"] == "HC2"
    assert deliveries["t2"]["supplier"]["identifier"]["value"] == "H1"
    assert deliveries["r1"]["supplier"] == {"display": "PHARMA LTD"}
    assert {"type": {"text": "document number"}, "system": system.document_system, "value": "WB-7"} \
        in deliveries["t1"]["identifier"]


def test_export_filters_by_facility_and_period(world):
    only_hc2 = export_bundle(world, settings=get_settings(), facility_code="HC2").bundle
    assert [e["resource"]["id"] for e in only_hc2["entry"]
            if e["resource"]["resourceType"] == "SupplyDelivery"] == ["t2"]
    window = export_bundle(world, settings=get_settings(), occurred_since=T0 + timedelta(minutes=30),
                           occurred_until=T0 + timedelta(hours=2, minutes=30), kinds=["dispense"]).bundle
    assert sorted(e["resource"]["id"] for e in window["entry"]
                  if e["resource"]["resourceType"] == "MedicationDispense") == ["d1", "d2"]
    with pytest.raises(Exception, match="unknown facility"):
        export_bundle(world, settings=get_settings(), facility_code="NOPE")
    with pytest.raises(Exception, match="R4 or R5"):
        export_bundle(world, settings=get_settings(), version="R3")


def _receipts_for(rows: list[tuple], dataset_session) -> list:
    """One receipt per dispensed lot, enough for all its dispensing, a day before the first."""
    need: dict[tuple, list] = {}
    for _k, fac, item, lot, qty, _card, _rx, at, _eid in rows:
        n = need.setdefault((fac, item, lot), [Decimal(0), at])
        n[0] += qty
        n[1] = min(n[1], at)
    expiry = {(i, lot): exp for i, lot, exp in dataset_session.execute(
        select(Item.code, Lot.lot_number, Lot.expiry_date).join(Lot, Lot.item_id == Item.id))}
    out = []
    for n, ((fac, item, lot), (qty, first)) in enumerate(sorted(need.items())):
        out.append(entry("receipt", qty, facility=fac, item=item, lot=lot, entry_id=f"seed-{n}",
                         expiry_date=expiry[(item, lot)], at=first - timedelta(days=1)))
    return out


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_round_trip_gives_the_same_dispensing(session, OtherSession, tmp_path, version):  # noqa: N803
    """One pharmacy's dispensing in February (one of them later reversed, so exported as
    entered-in-error and not recorded again)."""
    import_small(session)
    since, until = datetime(2026, 2, 1, tzinfo=timezone.utc), datetime(2026, 3, 1, tzinfo=timezone.utc)
    source_rows = [r for r in dispensing_rows(session) if r[1] == "BEN-PH01" and since <= r[7] < until]
    assert len(source_rows) > 50
    result = export_bundle(session, settings=get_settings(), version=version, kinds=["dispense"],
                           facility_code="BEN-PH01",
                           occurred_since=since, occurred_until=until, patient_ids="card")
    bundle = result.to_json()
    assert result.counts["MedicationDispense"] == len(source_rows) + 1

    with OtherSession() as target:
        import_master_data(target, tmp_path)
        post(target, _receipts_for(source_rows, session))
        target.commit()
        report = import_bundle(target, bundle, systems=get_settings().fhir, imported_by="importer")
        target.commit()
        assert report.added == len(source_rows)
        assert len(report.skipped) == 1 and "status entered-in-error" in report.skipped[0]
        assert dispensing_rows(target) == source_rows

        again = import_bundle(target, bundle, systems=get_settings().fhir, imported_by="importer")
        target.commit()
        assert (again.added, again.already_present) == (0, len(source_rows))
        assert target.scalar(select(func.count()).select_from(LedgerEntry)
                             .where(LedgerEntry.kind == "dispense")) == len(source_rows)


def _bundle(session, **kw) -> dict:
    try:
        return json.loads(export_bundle(session, settings=get_settings(), kinds=["dispense"], patient_ids="card",
                                        **kw).to_json())
    finally:
        session.rollback()  # end the read so other sessions may write (SQLite)


def _dispenses(bundle: dict) -> list[tuple[int, dict]]:
    return [(i, e["resource"]) for i, e in enumerate(bundle["entry"])
            if e["resource"]["resourceType"] == "MedicationDispense"]


def _ledger_count(Session) -> int:  # noqa: N803
    with Session() as s:
        return s.scalar(select(func.count()).select_from(LedgerEntry))


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_each_kind_of_bad_entry_is_named_and_nothing_is_stored(world, Session, version):  # noqa: N803
    good = _bundle(world, version=version)
    system = get_settings().fhir
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    template = next(r for _i, r in _dispenses(good) if r["id"] == "d1")
    rx_entries = [e for e in good["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    breaks = {
        "quantity.value": lambda r: r["quantity"].update(value=-5),
        "quantity.unit": lambda r: (r["quantity"].update(unit="box"), r["quantity"].pop("code"),
                                    r["quantity"].pop("system")),
        "quantity.code": lambda r: r["quantity"].update(code="{box}"),
        "subject.identifier": lambda r: r["subject"].update(identifier={"system": "urn:other", "value": "X"}),
        "location.identifier": lambda r: r["location"]["identifier"].update(value="NOWHERE"),
        "whenHandedOver": lambda r: r.update(whenHandedOver="2026-03-01"),
        "status": lambda r: r.update(status="done"),
        "code.coding": lambda r: r["contained"][0]["code"]["coding"][0].update(code="NOSUCH"),
        "authorizingPrescription": lambda r: r.update(authorizingPrescription=[
            r["authorizingPrescription"][0], r["authorizingPrescription"][0]]),
        "id": lambda r: (r.update(id=""), r.update(identifier=[])),
    }
    expected = {}
    code_path = ("medicationReference" if version == "R4" else "medication.reference") + "(Medication).code.coding"
    bundle["entry"].extend(copy.deepcopy(rx_entries))
    for n, (path, broken) in enumerate(breaks.items()):
        res = copy.deepcopy(template)
        res["id"] = f"bad-{n}"
        res["identifier"] = [{"system": system.entry_system, "value": f"fresh-{n}"}]
        broken(res)
        bundle["entry"].append({"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{n:012d}", "resource": res})
        expected[len(bundle["entry"]) - 1] = (res["id"] or None, code_path if path == "code.coding" else path)
    # Two valid dispenses stating the same entry: the second is refused.
    for n in range(2):
        res = copy.deepcopy(template)
        res["id"], res["identifier"] = f"twin-{n}", [{"system": system.entry_system, "value": "twin"}]
        bundle["entry"].append({"resource": res})
    expected[len(bundle["entry"]) - 1] = ("twin-1", "id")
    # A medicine coded in another system only.
    res = copy.deepcopy(template)
    res["id"], res["identifier"] = "bad-med", []
    res["contained"][0]["code"]["coding"] = [{"system": "http://snomed.info/sct", "code": "322236009"}]
    bundle["entry"].append({"resource": res})
    expected[len(bundle["entry"]) - 1] = ("bad-med", code_path)
    bundle["entry"].append({"fullUrl": "urn:uuid:x"})
    expected[len(bundle["entry"]) - 1] = (None, "resource")

    before = _ledger_count(Session)
    with Session() as s:
        with pytest.raises(FhirImportFailed) as failed:
            import_bundle(s, json.dumps(bundle), systems=get_settings().fhir, imported_by="importer")
        s.rollback()
    got = {p.index: (p.resource_id, p.path) for p in failed.value.problems}
    assert got == expected
    text = [str(p) for p in failed.value.problems]
    assert any(t.startswith(f"entry[{min(expected)}] (id bad-0): quantity.value: must be greater than zero")
               for t in text), text
    assert _ledger_count(Session) == before


def test_ledger_refusals_name_their_entry_and_roll_back_the_rest(world, Session):  # noqa: N803
    bundle = _bundle(world)
    system = get_settings().fhir
    (_i, template), = [(i, r) for i, r in _dispenses(bundle) if r["id"] == "d2"]
    ok, too_much, no_lot = (copy.deepcopy(template) for _ in range(3))
    for n, res in enumerate((ok, too_much, no_lot)):
        res["id"] = f"new-{n}"
        res["identifier"] = [{"system": system.entry_system, "value": f"new-{n}"}]
    too_much["quantity"]["value"] = 100000
    no_lot["contained"][0]["batch"] = {"lotNumber": "NEVER-RECEIVED"}
    payload = {"resourceType": "Bundle", "type": "collection",
               "entry": [{"resource": ok}, {"resource": too_much}, {"resource": no_lot}]}
    before = _ledger_count(Session)
    with Session() as s:
        with pytest.raises(FhirImportFailed) as failed:
            import_bundle(s, payload, systems=get_settings().fhir, imported_by="importer")
        s.rollback()
    got = [(p.index, p.resource_id, p.path) for p in failed.value.problems]
    assert got == [(1, "new-1", "quantity.value"), (2, "new-2", "medicationReference(Medication).batch.lotNumber")]
    assert "insufficient stock" in failed.value.problems[0].message
    assert _ledger_count(Session) == before


def test_foreign_dispense_gets_a_stable_entry_id_and_defaults(world, Session):  # noqa: N803
    """A dispense from another system: no Dawa identifiers but ours for the codes, no performer."""
    system = get_settings().fhir
    res = {
        "resourceType": "MedicationDispense", "id": "hosp-778", "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": system.item_system, "code": "INSG"}]},
        "subject": {"reference": "Patient/p1"},
        "location": {"identifier": {"system": system.facility_system, "value": "H1"}},
        "quantity": {"value": 1.5, "unit": "ml"},
        "whenHandedOver": "2026-03-02T10:00:00+02:00",
    }
    patient = {"resourceType": "Patient", "id": "p1",
               "identifier": [{"system": system.patient_system, "value": "LY0000000001"}]}
    cancelled = {**res, "id": "hosp-779", "status": "cancelled"}
    payload = {"resourceType": "Bundle", "type": "collection",
               "entry": [{"fullUrl": "http://hosp/fhir/Patient/p1", "resource": patient},
                         {"resource": res}, {"resource": cancelled}]}
    validate(payload, "R4")
    with Session() as s:
        report = import_bundle(s, payload, systems=get_settings().fhir, imported_by="hosp-feed")
        s.commit()
        assert report.added == 1
        assert report.skipped == ["entry[2] (MedicationDispense/hosp-779): status cancelled: only completed "
                                  "dispensing is recorded"]
        stored = s.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == "fhir-hosp-778")).one()
        assert (stored.quantity, stored.recorded_by, stored.prescription_ref) == (Decimal("1.5"), "hosp-feed", None)
        assert stored.occurred_at == datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
        assert report.notes == {"no_prescription": 1}
        assert import_bundle(s, payload, systems=get_settings().fhir, imported_by="hosp-feed").already_present == 1


def test_not_a_bundle_is_refused(world):
    with pytest.raises(FhirImportFailed, match="problem") as failed:
        import_bundle(world, b"{not json", systems=get_settings().fhir, imported_by="importer")
    assert failed.value.problems[0].path == "(json)"
    with pytest.raises(FhirImportFailed) as failed:
        import_bundle(world, {"resourceType": "MedicationDispense"}, systems=get_settings().fhir,
                      imported_by="importer")
    assert str(failed.value.problems[0]) == "bundle: resourceType: must be Bundle"


def test_cli_exports_and_imports(sqlite_engine, tmp_path, monkeypatch):
    with session_factory(sqlite_engine)() as s:
        build_world(s)
        post(s, [entry("receipt", 100, entry_id="r1"),
                 entry("dispense", 5, entry_id="d1", at=T0 + timedelta(hours=1)),
                 entry("count", 95, entry_id="c1", at=T0 + timedelta(hours=2))])
        from web.admin.service import create_user

        create_user(s, "op1", "admin", "a long enough password 1", web=get_settings().web)
        s.commit()
    from web.cli import common as cli
    from web.cli.main import app

    for console in (cli.console, cli.err):  # no line wrapping in what is checked below
        monkeypatch.setattr(console, "width", 400)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    out = tmp_path / "bundle.json"
    res = runner.invoke(app, ["fhir", "export", "--out", str(out), "--facility", "H1", "--occurred-from", "2026-03-01",
                              "--occurred-to", "2026-03-01", "--db", url], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "1 physical count(s) left out" in res.stderr
    validate(json.loads(out.read_text()), "R4")
    assert "LY0000000001" not in out.read_text() and pseudonym("LY0000000001", PATIENT_KEY) in out.read_text()
    out.unlink()
    res = runner.invoke(app, ["fhir", "export", "--out", str(out), "--version", "R5", "--patient-ids", "card",
                              "--db", url], catch_exceptions=False)
    assert res.exit_code == 2 and "--patient-ids card needs --by USER" in " ".join(res.stderr.split())
    assert not out.exists()
    res = runner.invoke(app, ["fhir", "export", "--out", str(out), "--version", "R5", "--patient-ids", "card",
                              "--by", "op1", "--db", url], catch_exceptions=False)
    assert res.exit_code == 0 and "1 InventoryReport" in " ".join(res.output.split())
    from web.models import AuditRecord

    with session_factory(sqlite_engine)() as s:
        (record,) = s.scalars(select(AuditRecord).where(AuditRecord.action == "clear_cards_exported")).all()
        assert record.object_id == "fhir" and '"clear_cards": true' in record.detail
        assert json.loads(record.detail)["patients"] >= 1
    res = runner.invoke(app, ["fhir", "import", str(out), "--operator", "op1", "--db", url], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "0 dispensing added, 1 already present" in " ".join(res.output.split())
    bad = json.loads(out.read_text())
    md = next(e["resource"] for e in bad["entry"] if e["resource"]["resourceType"] == "MedicationDispense")
    md["quantity"]["value"] = 0
    md["identifier"][0]["value"] = "other"
    out.write_text(json.dumps(bad))
    res = runner.invoke(app, ["fhir", "import", str(out), "--operator", "op1", "--db", url], catch_exceptions=False)
    assert res.exit_code == 1
    assert f"{out}: entry[" in res.stderr and "quantity.value: must be greater than zero (0)" in " ".join(res.stderr.split())


def test_an_entry_id_fhir_cannot_carry_as_an_id_survives_as_identifier(world):
    post(world, entry("dispense", 1, entry_id="ward_7/night:1", at=T0 + timedelta(hours=5)))
    world.commit()
    bundle = json.loads(export_bundle(world, settings=get_settings(), kinds=["dispense"], version="R5",
                                      patient_ids="card").to_json())
    validate(bundle, "R5")
    res = next(r for _i, r in _dispenses(bundle) if r["identifier"][0]["value"] == "ward_7/night:1")
    assert res["id"] != "ward_7/night:1" and len(res["id"]) == 36  # a UUID derived from the entry_id
    world.rollback()
    report = import_bundle(world, bundle, systems=get_settings().fhir, imported_by="importer")
    assert (report.added, report.already_present) == (0, 3)  # d1, d2 and this one; d3 was reversed
    world.rollback()
