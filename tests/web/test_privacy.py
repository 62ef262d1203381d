"""Health cards are pseudonymous wherever a person does not need them, and every patient-level
read is audited (bulk reads with their count of patients), against the live app on both databases."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from anomaly.models import Flag, FlagEvidence, Scan
from stock.models import Facility, LedgerEntry
from stock.pseudonyms import is_pseudonym, patient_key, pseudonym, pseudonymise_text
from tests.web.conftest import make_settings
from tests.web.interop_helpers import allow_health_cards
from tests.web.test_app_api import bearer, issue_token
from web.models import AuditRecord

CARD = "LY0000000001"  # the patient of the seeded dispense at H1


def key_of(live_server) -> str:
    return patient_key(live_server.app.state.settings)


def test_pseudonyms_are_keyed_stable_and_opaque():
    a, b = pseudonym(CARD, "key-one"), pseudonym(CARD, "key-two")
    assert a == pseudonym(f" {CARD} ", "key-one") and a != b
    assert is_pseudonym(a) and CARD not in a and pseudonym("LY0000000002", "key-one") != a
    assert pseudonymise_text(f"patient {CARD} got 3 fills", [CARD], "key-one") == f"patient {a} got 3 fills"
    settings = make_settings()
    assert patient_key(settings) != settings.secret_key  # derived when DAWA_PATIENT_ID_KEY is unset
    assert patient_key(settings.model_copy(update={"patient_id_key": "k"})) == "k"


def _audit_texts(live_server) -> list[str]:
    with live_server.Session() as s:
        return [f"{r.object_id} {r.detail}" for r in s.scalars(select(AuditRecord))]


def test_patient_reads_are_audited_under_the_pseudonym(live_server):
    c = live_server.client(headers=bearer(issue_token(live_server, "auditor")))
    assert c.get(f"/api/v1/patients/{CARD}/dispensings").status_code == 200
    assert c.get("/api/v1/patients/LY0000099999/dispensings").status_code == 404
    with live_server.Session() as s:
        reads = s.scalars(select(AuditRecord).where(AuditRecord.action == "patient_history_read")
                          .order_by(AuditRecord.id)).all()
    assert [r.object_id for r in reads] == [pseudonym(CARD, key_of(live_server)),
                                            pseudonym("LY0000099999", key_of(live_server))]
    assert not [t for t in _audit_texts(live_server) if CARD in t or "LY0000099999" in t]


def test_logs_name_patients_by_pseudonym(live_server, caplog):
    p = pseudonym(CARD, key_of(live_server))
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                                                 f"/api/v1/patients/{CARD}/dispensings?limit=5", "1.1", 200)
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                                                 f"/pharmacy/H1/prescriptions?item_code=MOR10&health_card_id={CARD}",
                                                 "1.1", 200)
    text = caplog.text
    assert CARD not in text and f"/patients/{p}/dispensings" in text and f"health_card_id={p}" in text


def _patient_flag(Session) -> str:
    t = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with Session() as s:
        h1 = s.scalars(select(Facility.id).where(Facility.code == "H1")).one()
        dispense = s.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.kind == "dispense")).one()
        scan = Scan(started_at=t, finished_at=t, through_seq=0)
        s.add(scan)
        s.flush()
        s.add(Flag(flag_id="F-patient", facility_id=h1, subject="patient", subject_id=CARD, score=0.9, rank_score=0.9,
                   severity="high", detectors="x", reason=f"patient {CARD} was given twice the dose", status="open",
                   created_at=t, updated_at=t, first_scan_id=scan.id, last_scan_id=scan.id))
        s.flush()
        s.add(FlagEvidence(flag_id="F-patient", entry_id=dispense))
        s.commit()
    return "F-patient"


def test_flags_and_exports_carry_pseudonyms_and_their_reads_are_audited(live_server):
    flag_id = _patient_flag(live_server.Session)
    p = pseudonym(CARD, key_of(live_server))
    api = live_server.client(headers=bearer(issue_token(live_server, "auditor")))
    listed = api.get("/api/v1/flags").text
    case = api.get(f"/api/v1/flags/{flag_id}")
    card = api.get("/api/v1/export/stock-card.csv", params={"facility": "H1", "item": "MOR10"})
    flags_csv = api.get("/api/v1/export/flags.csv")
    for r in (case, card, flags_csv):
        assert r.status_code == 200, r.text
    for text in (listed, case.text, card.text, flags_csv.text):
        assert CARD not in text and p in text
    import io

    from openpyxl import load_workbook

    xlsx = load_workbook(io.BytesIO(api.get("/api/v1/export/flags.xlsx").content)).active
    cells = [str(c.value) for row in xlsx.iter_rows() for c in row]
    assert p in cells and not [c for c in cells if CARD in c]
    assert case.json()["evidence"][0]["patient"] == p and case.json()["subject_id"] == p
    page = live_server.login("auditor")
    exported = page.get(f"/flags/{flag_id}/export", params={"format": "csv"})
    assert exported.status_code == 200 and CARD not in exported.text and p in exported.text
    # The flag page is the audited patient page: the clear card is shown there, and the read recorded.
    queue = page.get("/flags")
    assert queue.status_code == 200 and CARD not in queue.text and p in queue.text  # the reason, pseudonymised
    shown = page.get(f"/flags/{flag_id}")
    assert shown.status_code == 200 and CARD in shown.text
    with live_server.Session() as s:
        records = s.scalars(select(AuditRecord).order_by(AuditRecord.id)).all()
    actions = {r.action: r for r in records}
    assert '"patients": 1' in actions["flags_read"].detail
    assert '"patients": 1' in actions["flag_read"].detail
    assert [r.object_id for r in records if r.action == "export_read"] == ["stock-card.csv", "flags.csv",
                                                                            "flags.xlsx"]
    assert actions["patient_history_read"].object_id == p
    assert not [t for t in _audit_texts(live_server) if CARD in t]


def test_a_stock_card_read_is_pseudonymous_and_audited(live_server):
    api = live_server.client(headers=bearer(issue_token(live_server, "manager_h1")))
    r = api.get("/api/v1/stock/card/H1/MOR10")
    assert r.status_code == 200 and CARD not in r.text
    assert [line["patient"] for line in r.json()["lines"] if line["patient"]] == [pseudonym(CARD, key_of(live_server))]
    with live_server.Session() as s:
        rec = s.scalars(select(AuditRecord).where(AuditRecord.action == "stock_card_read")).one()
    assert rec.object_id == "H1/MOR10" and '"patients": 1' in rec.detail


def test_a_fhir_bundle_read_is_audited_with_its_patients(live_server):
    api = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    assert api.get("/api/v1/fhir/bundle").status_code == 200
    with live_server.Session() as s:
        rec = s.scalars(select(AuditRecord).where(AuditRecord.action == "fhir_export")).one()
    assert rec.object_id == "H1" and '"patients": 1' in rec.detail and '"patient_ids": "pseudonym"' in rec.detail


def _patients(bundle: dict) -> list[dict]:
    return [e["resource"]["identifier"][0] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]


def test_fhir_patients_are_pseudonymous_unless_an_allowed_role_asks_for_cards(live_server):
    from stock.settings import get_settings

    systems = get_settings().fhir
    pharm = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1")))
    r = pharm.get("/api/v1/fhir/bundle")
    assert _patients(r.json()) == [{"system": systems.pseudonym_system, "value": pseudonym(CARD, key_of(live_server))}]
    assert CARD not in r.text        # not in the subject, the Patient, nor any id or fullUrl derived from it
    # Cards in the clear: refused while the install names no role for them, whoever asks...
    asked = pharm.get("/api/v1/fhir/bundle", params={"patient_ids": "card"})
    assert asked.status_code == 403 and asked.json()["resourceType"] == "OperationOutcome"
    assert CARD not in asked.text
    # ... then given to an allowed role, and audited as such; never to a role that does not need them.
    allow_health_cards(live_server, "pharmacist", "auditor")
    r = pharm.get("/api/v1/fhir/bundle", params={"patient_ids": "card"})
    assert r.status_code == 200 and _patients(r.json()) == [{"system": systems.patient_system, "value": CARD}]
    auditor = live_server.client(headers=bearer(issue_token(live_server, "auditor")))
    refused = auditor.get("/api/v1/fhir/bundle", params={"patient_ids": "card", "facility": "H1"})
    assert refused.status_code == 403 and CARD not in refused.text
    bad = pharm.get("/api/v1/fhir/bundle", params={"patient_ids": "everything"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    with live_server.Session() as s:
        details = list(s.scalars(select(AuditRecord.detail).where(AuditRecord.action == "fhir_export")
                                 .order_by(AuditRecord.id)))
    assert ['"patient_ids": "card"' in d for d in details] == [False, True]


@pytest.mark.parametrize("web_settings", [make_settings()])
def test_manager_stock_card_export_is_pseudonymous_and_audited(live_server, web_settings):
    c = live_server.login("manager_h1")
    r = c.get("/stock/H1/card/MOR10/export")
    assert r.status_code == 200 and CARD not in r.text and pseudonym(CARD, key_of(live_server)) in r.text
    with live_server.Session() as s:
        assert s.scalars(select(AuditRecord.object_id).where(AuditRecord.action == "export_read")).one() \
            == "stock-card.csv"
