"""Health cards are pseudonymous wherever a person does not need them, and every patient-level
read is audited (bulk reads with their count of patients), against the live app on both databases."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

import httpx

import pytest
from sqlalchemy import func, select

from anomaly.models import Flag, FlagEvidence, Scan
from stock.db import session_factory
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
    assert c.post("/api/v1/patients/dispensings", json={"health_card_id": CARD}).status_code == 200
    assert c.post("/api/v1/patients/dispensings", json={"health_card_id": "LY0000099999"}).status_code == 404
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


def _first_allowed(row) -> tuple[str, str] | None:
    """A user whose own facility's cell of ``row`` is ALLOW, and that facility."""
    from tests.web.test_access_matrix import ALLOW, ROLE_USERS

    for role, (username, own, _other) in ROLE_USERS.items():
        if row.cells[role][0] == ALLOW:
            return username, own
    return None


TRAIL = {"/audit", "/api/v1/audit"}
"""The audit trail names a patient (by pseudonym) only as the object of a read recorded earlier:
reading it is no read of patient data, and recording it would fill the trail with itself."""


def test_every_page_that_shows_a_patient_records_the_read(live_server):
    """Walk every GET route of the access matrix (which every route must be in) as a user allowed
    there, with a patient on the record: a flag about them, a dispense of today and a history to ask
    for. Any answer that names the patient, by card or by pseudonym, must have left an audit record;
    a route added later that shows patients without recording the read fails here."""
    from tests.web.test_access_matrix import MATRIX, add_users

    add_users(live_server.Session, {"admin_tripoli": ("admin", None, "Tripoli")})
    flag_id = _patient_flag(live_server.Session)
    p = pseudonym(CARD, key_of(live_server))
    with live_server.Session() as s:
        dispense = s.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.kind == "dispense")).one()
    # The pharmacist's own dispense of today, for their list of today's entries.
    posted = live_server.client(headers=bearer(issue_token(live_server, "pharm_h1"))).post("/api/v1/entries", json={
        "entries": [{"entry_id": "walk-1", "occurred_at": datetime.now(timezone.utc).isoformat(), "kind": "dispense",
                     "facility_code": "H1", "item_code": "MOR10", "lot_number": "L1", "quantity": 1,
                     "health_card_id": CARD, "prescription_id": "RX1"}]})
    assert posted.status_code == 201, posted.text
    own = {"flag_id": flag_id, "health_card_id": p, "patient": p}
    clients: dict[str, object] = {}
    walked, named = [], []
    for row in MATRIX:
        if row.method != "GET" or (who := _first_allowed(row)) is None:
            continue
        username, facility = who
        c = clients.get(username) or clients.setdefault(username, live_server.login(username))
        url = row.url(facility)
        for name, value in own.items():
            url = url.replace("{" + name + "}", value).replace(row.params.get(name, "\0"), value)
        query = {**row.query_for(facility), "done": dispense} if url.startswith("/pharmacy/") else row.query_for(facility)
        with live_server.Session() as s:
            before = s.scalar(select(func.count()).select_from(AuditRecord))
        r = c.get(url, params=query)
        walked.append(url)
        if url in TRAIL:
            assert CARD not in r.text, url
            continue
        if CARD in r.text or p in r.text:
            named.append(url)
            with live_server.Session() as s:
                after = s.scalar(select(func.count()).select_from(AuditRecord))
            assert after > before, f"{url} ({username}) shows a patient and recorded no read"
    # The walk reached the pages that name patients: the flag, the stock card, today's entries...
    assert {f"/flags/{flag_id}", "/pharmacy/H1/today", "/api/v1/stock/card/H1/MOR10"} <= set(named), named


URL_ATTRIBUTES = re.compile(r'\b(?:href|src|action|hx-get|hx-post|hx-put|hx-delete|formaction)="([^"]*)"')


def test_no_health_card_travels_in_a_url_or_reaches_the_access_log(web_world, web_settings):
    """The counter and the auditor at work, served with uvicorn's access log on: the pharmacist types
    a card, the open prescriptions come back, the dispense is recorded and listed; the auditor asks
    for the patient's history by card and by pseudonym. No request any of them sends carries the
    card in its URL, no page links to one that would, and the access log never holds the card."""
    from web.app import create_app
    from tests.web.conftest import LiveServer, Served, page_csrf

    served = Served(create_app(web_world, web_settings), access_log=True)
    server = LiveServer(served.base_url, None, web_world, session_factory(web_world))
    access = logging.getLogger("uvicorn.access")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep = Keep()
    access.addHandler(keep)
    sent: list[str] = []
    pages: list[str] = []

    def client() -> httpx.Client:
        c = httpx.Client(base_url=served.base_url, timeout=30, event_hooks={
            "request": [lambda req: sent.append(str(req.url))],
            "response": [lambda r: pages.append(r.headers.get("location", ""))]})
        server.clients.append(c)
        return c

    try:
        counter = server.login("pharm_h1", client=client())
        form = counter.get("/pharmacy/H1/dispense").text
        pages.append(form)
        token = page_csrf(counter, "/pharmacy/H1/dispense")
        rx = counter.post("/pharmacy/H1/prescriptions", headers={"X-CSRF-Token": token, "HX-Request": "true"},
                          data={"health_card_id": CARD, "item_code": "MOR10", "prescription_id": "",
                                "paper_prescription": ""})
        assert rx.status_code == 200 and 'value="RX1"' in rx.text
        entry_id = re.search(r'name="entry_id" value="([^"]+)"', form).group(1)
        done = counter.post("/pharmacy/H1/dispense", data={
            "csrf_token": token, "entry_id": entry_id, "health_card_id": CARD, "item_code": "MOR10",
            "lot_number": "L1", "quantity": "2", "prescription_id": "RX1"})
        assert done.status_code == 303, done.text[:300]
        confirmed = counter.get(done.headers["location"])
        assert confirmed.status_code == 200 and "…0001" in confirmed.text and CARD not in confirmed.text
        pages += [confirmed.text, counter.get("/pharmacy/H1/today").text]

        auditor = server.login("auditor", client=client())
        by_card = auditor.post("/api/v1/patients/dispensings", json={"health_card_id": CARD},
                               headers={"X-CSRF-Token": page_csrf(auditor)})
        p = pseudonym(CARD, patient_key(web_settings))
        by_name = auditor.get(f"/api/v1/patients/{p}/dispensings")
        assert by_card.status_code == by_name.status_code == 200 and by_card.json() == by_name.json()
        assert [r["quantity"] for r in by_card.json()] == [2, 10]
        pages.append(auditor.get("/flags").text)
        # A card put in the URL all the same is refused unread, and still kept out of the log.
        sent_before = len(sent)
        refused = auditor.get(f"/api/v1/patients/{CARD}/dispensings")
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "patient"
        assert CARD not in refused.text
        del sent[sent_before:]
    finally:
        access.removeHandler(keep)
        for c in server.clients:
            c.close()
        served.stop()
    assert not [u for u in sent if CARD in u], [u for u in sent if CARD in u]
    linked = [u for page in pages for u in URL_ATTRIBUTES.findall(page)] + [u for u in pages if u.startswith("/")]
    # A request a page builds from its fields (htmx's hx-include) puts them in the URL when it is a GET.
    built = [tag for page in pages for tag in re.findall(r"<[^>]*hx-include=\"[^\"]*health_card_id[^>]*>", page)]
    assert built and not [tag for tag in built if "hx-get" in tag], built
    assert linked and not [u for u in linked if CARD in u]
    log = "\n".join(lines)
    assert "/pharmacy/H1/prescriptions" in log and f"/api/v1/patients/{p}/dispensings" in log  # as asked
    assert CARD not in log
    with session_factory(web_world)() as s:
        assert not [t for t in (f"{r.object_id} {r.detail}" for r in s.scalars(select(AuditRecord))) if CARD in t]
