"""FHIR import of other systems' dispenses: the medicine by GTIN, ATC + dose form + strength or
code; units by UCUM; a lot chosen first-expiry-first-out when none is named (and recorded as so
chosen); authorship always the importer's, the source's performer kept as provenance; every
refusal an issue naming its path. Both databases."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from stock.ledger import post
from stock.masterdata import add_item
from stock.models import Item, LedgerEntry, Lot
from stock.settings import get_settings
from tests.stock.builders import T0, build_world, entry
from tests.web.test_fhir import validate
from web.interop.fhir import FhirImportFailed, import_bundle
from web.interop.fhir_codes import ATC_SYSTEM, GTIN_SYSTEM, UCUM
from web.interop.models import ImportProvenance

MOR10_GTIN = "4006381333931"   # a real EAN-13 whose digits also read as AI 400


@pytest.fixture
def world(session):
    build_world(session)
    add_item(session, "MOR30", "Morphine 30 mg tablet", "tablet", atc_code="N02AA01", form="tablet")
    add_item(session, "MORSOL", "Morphine 10 mg/5 ml oral solution", "ml", atc_code="N02AA01",
             form="oral solution")
    session.execute(update(Item).where(Item.code == "MOR10").values(gtin=MOR10_GTIN.zfill(14), form="tablet"))
    post(session, [
        entry("receipt", 50, lot="LATE", expiry_date=date(2029, 6, 30), entry_id="r-late"),
        entry("receipt", 20, lot="SOON", expiry_date=date(2027, 1, 31), entry_id="r-soon"),
        entry("receipt", 30, lot="GONE", expiry_date=date(2026, 2, 1), entry_id="r-gone",
              at=T0 - timedelta(days=60)),
        entry("receipt", 100, item="MOR30", lot="M30", expiry_date=date(2028, 1, 31), entry_id="r-m30"),
        entry("receipt", 500, item="MORSOL", lot="S1", expiry_date=date(2028, 1, 31), entry_id="r-sol"),
    ])
    session.commit()
    return session


def dispense(rid: str, medication: dict, quantity: dict, *, performer: str | None = "dr.who",
             when: str = "2026-03-02T10:00:00+02:00") -> dict:
    """A MedicationDispense as another system (R4) writes it: its own ids, a contained Medication."""
    system = get_settings().fhir
    res = {
        "resourceType": "MedicationDispense", "id": rid, "status": "completed",
        "contained": [{"resourceType": "Medication", "id": "m", **medication}],
        "medicationReference": {"reference": "#m"},
        "subject": {"identifier": {"system": system.patient_system, "value": "LY0000000001"}},
        "location": {"identifier": {"system": system.facility_system, "value": "H1"}},
        "quantity": quantity,
        "whenHandedOver": when,
    }
    if performer:
        res["performer"] = [{"actor": {"identifier": {"system": "http://hosp.example/staff", "value": performer}}}]
    return res


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def stored(session, entry_id: str) -> tuple:
    return session.execute(select(Item.code, Lot.lot_number, LedgerEntry.quantity, LedgerEntry.recorded_by)
                           .join(Item, Item.id == LedgerEntry.item_id).join(Lot, Lot.id == LedgerEntry.lot_id)
                           .where(LedgerEntry.entry_id == entry_id)).one()


TABLETS = {"value": 5, "unit": "tablets", "system": UCUM, "code": "{tbl}"}


def test_medicine_by_gtin_atc_form_strength_units_by_ucum_lot_by_fefo(world):
    by_gtin = dispense("g1", {"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}}, TABLETS)
    by_atc_strength = dispense("a1", {
        "code": {"coding": [{"system": ATC_SYSTEM, "code": "N02AA01"}]},
        "form": {"text": "Tablet"},
        "ingredient": [{"itemCodeableConcept": {"text": "morphine"},
                        "strength": {"numerator": {"value": 30, "unit": "mg"}, "denominator": {"value": 1}}}]},
        {"value": 2, "unit": "tablet"})
    by_atc_form = dispense("a2", {"code": {"coding": [{"system": ATC_SYSTEM, "code": "N02AA01"}]},
                                  "form": {"coding": [{"display": "oral solution"}]}},
                           {"value": 7.5, "system": UCUM, "code": "mL"})
    payload = bundle(by_gtin, by_atc_strength, by_atc_form)
    validate(payload, "R4")
    report = import_bundle(world, payload, systems=get_settings().fhir, imported_by="clerk1")
    world.commit()
    assert (report.added, report.lots_chosen) == (3, 3)
    # First-expiry-first-out: SOON (2027) before LATE (2029); GONE expired before the dispense.
    assert stored(world, "fhir-g1") == ("MOR10", "SOON", Decimal(5), "clerk1")
    assert stored(world, "fhir-a1") == ("MOR30", "M30", Decimal(2), "clerk1")
    assert stored(world, "fhir-a2") == ("MORSOL", "S1", Decimal("7.5"), "clerk1")
    prov = {p.entry_id: p for p in world.scalars(select(ImportProvenance))}
    assert (prov["fhir-g1"].lot_choice, prov["fhir-g1"].source_user, prov["fhir-g1"].source_system,
            prov["fhir-g1"].imported_by) == ("fefo", "dr.who", "http://hosp.example/staff", "clerk1")
    # The same bundle again, imported by someone else: nothing added, nothing re-authored.
    again = import_bundle(world, payload, systems=get_settings().fhir, imported_by="clerk2")
    world.commit()
    assert (again.added, again.already_present) == (0, 3)
    assert stored(world, "fhir-g1")[3] == "clerk1"


def test_fefo_moves_on_when_the_first_lot_cannot_cover(world):
    big = dispense("big", {"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}},
                   {"value": 25, "unit": "tablet"})
    import_bundle(world, bundle(big), systems=get_settings().fhir, imported_by="clerk1")
    assert stored(world, "fhir-big")[1] == "LATE"      # SOON holds 20 only
    world.rollback()
    huge = dispense("huge", {"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}},
                    {"value": 60, "unit": "tablet"})
    with pytest.raises(FhirImportFailed) as failed:
        import_bundle(world, bundle(huge), systems=get_settings().fhir, imported_by="clerk1")
    (p,) = failed.value.problems
    assert p.path == "medicationReference(Medication).batch.lotNumber" and "no unexpired lot" in p.message
    assert p.expression() == "Bundle.entry[0].resource.medicationReference(Medication).batch.lotNumber"


def test_authorship_is_the_importer_never_the_bundles_performer(world):
    """A performer in Dawa's own user system naming someone else does not make them the author."""
    system = get_settings().fhir
    spoof = dispense("s1", {"code": {"coding": [{"system": system.item_system, "code": "MOR10"}],
                                     }, "batch": {"lotNumber": "LATE"}}, {"value": 1, "unit": "tablet"},
                     performer=None)
    spoof["performer"] = [{"actor": {"identifier": {"system": system.user_system, "value": "chief_pharmacist"}}}]
    import_bundle(world, bundle(spoof), systems=get_settings().fhir, imported_by="clerk1")
    world.commit()
    assert stored(world, "fhir-s1")[3] == "clerk1"
    prov = world.scalars(select(ImportProvenance).where(ImportProvenance.entry_id == "fhir-s1")).one()
    assert (prov.source_user, prov.source_system, prov.lot_choice) == ("chief_pharmacist", system.user_system, None)


@pytest.mark.parametrize("medication,quantity,path,words", [
    ({"code": {"coding": [{"system": GTIN_SYSTEM, "code": "4006381333932"}]}}, TABLETS,
     "medicationReference(Medication).code.coding", "wrong check digit"),
    ({"code": {"coding": [{"system": GTIN_SYSTEM, "code": "5012345678900"}]}}, TABLETS,
     "medicationReference(Medication).code.coding", "no item has the GTIN 05012345678900"),
    ({"code": {"coding": [{"system": ATC_SYSTEM, "code": "N02AA01"}]}}, TABLETS,
     "medicationReference(Medication).code.coding", "ATC code N02AA01 is 3 items (MOR10, MOR30, MORSOL)"),
    ({"code": {"coding": [{"system": ATC_SYSTEM, "code": "J01CA04"}]}}, TABLETS,
     "medicationReference(Medication).code.coding", "no item has the ATC code J01CA04"),
    ({"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}},
     {"value": 5, "system": UCUM, "code": "mL"}, "quantity.code", "not the base unit"),
    ({"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}},
     {"value": 5, "system": "urn:units", "code": "TAB"}, "quantity.system", "UCUM"),
    ({"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}},
     {"value": 5, "unit": "boxes"}, "quantity.unit", "not the base unit"),
])
def test_each_refusal_names_its_path(world, medication, quantity, path, words):
    ok = dispense("ok", {"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}}, TABLETS)
    bad = dispense("bad", copy.deepcopy(medication), quantity)
    with pytest.raises(FhirImportFailed) as failed:
        import_bundle(world, bundle(ok, bad), systems=get_settings().fhir, imported_by="clerk1")
    world.rollback()
    (p,) = failed.value.problems
    assert (p.index, p.resource_id, p.path) == (1, "bad", path)
    assert words in p.message
    assert p.expression() == f"Bundle.entry[1].resource.{path}"
    assert world.scalar(select(LedgerEntry.id).where(LedgerEntry.entry_id == "fhir-ok")) is None


def test_a_facility_outside_the_callers_scope_is_refused_before_its_stock_is_read(world):
    big = dispense("x", {"code": {"coding": [{"system": GTIN_SYSTEM, "code": MOR10_GTIN}]}},
                   {"value": 100000, "unit": "tablet"})
    with pytest.raises(FhirImportFailed) as failed:
        import_bundle(world, bundle(big), systems=get_settings().fhir, imported_by="pharm_hc2",
                      facilities_allowed={"HC2"})
    (p,) = failed.value.problems
    assert p.path == "location.identifier" and p.message == "facility H1 is outside your scope"
    assert "LATE" not in str(p) and "SOON" not in str(p)
