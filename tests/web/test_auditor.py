"""Auditor pages and the flags API, served for real over the small sample imported and scanned,
on SQLite and PostgreSQL: scope, the workflow and its timeline, precision after verdicts, case
export, CSRF."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from anomaly import scan
from anomaly.flags import detector_precision
from anomaly.models import Flag, FlagEvidence
from stock.db import session_factory
from stock.importer import import_dataset
from tests.web.conftest import PASSWORD, LiveServer, Served, csrf_of, make_settings
from web.models import AuditRecord
from sample_data import SMALL

USERS = {
    "aud_trp": ("auditor", None, "Tripoli"),
    "aud_trp2": ("auditor", None, "Tripoli"),
    "aud_ben": ("auditor", None, "Benghazi"),
    "aud_nat": ("auditor", None, None),
    "pharm_trp": ("pharmacist", "TRP-H01", None),
}


@pytest.fixture
def server(engine):
    from web.app import create_app
    from web.admin.service import create_user

    Session = session_factory(engine)
    settings = make_settings()
    with Session() as s:
        import_dataset(s, SMALL)
        for name, (role, facility, region) in USERS.items():
            create_user(s, name, role, PASSWORD, facility=facility, region=region, web=settings.web)
        s.commit()
        scan.run(s)
        s.commit()
    served = Served(create_app(engine, settings))
    live = LiveServer(served.base_url, served, engine, Session)
    try:
        yield live
    finally:
        for c in live.clients:
            c.close()
        served.stop()


def _api_csrf(client) -> dict:
    return {"X-CSRF-Token": csrf_of(client.get("/", follow_redirects=True).text)}


def _flags(client, **params) -> list[dict]:
    r = client.get("/api/v1/flags", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["flags"]


def test_queue_is_scoped_filtered_and_paged(server):
    trp, ben, nat = server.login("aud_trp"), server.login("aud_ben"), server.login("aud_nat")
    everything = _flags(nat)
    mine, theirs = _flags(trp), _flags(ben)
    assert mine and theirs
    assert {f["region"] for f in mine} == {"Tripoli"} and {f["region"] for f in theirs} == {"Benghazi"}
    assert {f["flag_id"] for f in mine} | {f["flag_id"] for f in theirs} <= {f["flag_id"] for f in everything}
    ranks = [f["rank_score"] for f in everything]
    assert ranks == sorted(ranks, reverse=True)  # most suspicious first

    # The queue page shows the same flags; another region's flag and filter are refused.
    page = trp.get("/flags")
    assert page.status_code == 200
    assert mine[0]["flag_id"] in page.text and theirs[0]["flag_id"] not in page.text
    assert trp.get(f"/flags/{theirs[0]['flag_id']}").status_code == 403
    r = trp.get("/api/v1/flags", params={"region": "Benghazi"})
    assert r.status_code == 403 and r.json()["error"]["field"] == "region"
    r = trp.get("/api/v1/flags", params={"facility": "BEN-H01"})
    assert r.status_code == 403 and r.json()["error"]["field"] == "facility"
    r = trp.get(f"/api/v1/flags/{theirs[0]['flag_id']}")
    assert r.status_code == 403 and r.json()["error"]["field"] == "flag_id"
    assert server.login("pharm_trp").get("/flags").status_code == 403

    # Filters and paging.
    high = _flags(nat, severity="high")
    assert high and all(f["severity"] == "high" for f in high)
    fac = mine[0]["facility_code"]
    assert {f["facility_code"] for f in _flags(trp, facility=fac)} == {fac}
    det = everything[0]["detector"].split(",")[0]
    assert all(det in f["detector"].split(",") for f in _flags(nat, detector=det))
    r = nat.get("/api/v1/flags", params={"severity": "extreme"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "severity"
    first, second = nat.get("/api/v1/flags?limit=5").json(), nat.get("/api/v1/flags?limit=5&offset=5").json()
    assert first["more"] and [f["flag_id"] for f in first["flags"] + second["flags"]] == \
        [f["flag_id"] for f in everything[:10]]
    table = nat.get("/flags", params={"page": 2}, headers={"HX-Request": "true"})
    assert table.status_code == 200 and "<html" not in table.text and 'id="flag-queue"' in table.text
    assert everything[25]["flag_id"] in table.text and everything[0]["flag_id"] not in table.text


def test_flag_page_context_workflow_and_precision(server):
    trp = server.login("aud_trp")
    top = next(f for f in _flags(trp) if f["subject"] == "patient")
    fid = top["flag_id"]
    page = trp.get(f"/flags/{fid}")
    assert page.status_code == 200
    for needle in ['id="reasons"', 'id="evidence"', 'id="patient-history"', 'id="user-activity"',
                   'id="consumption-vs-peers"', *top["entry_ids"]]:
        assert needle in page.text, needle
    with server.Session() as s:  # the patient history read was audited
        rec = s.scalars(select(AuditRecord).where(AuditRecord.action == "patient_history_read",
                                                  AuditRecord.object_id == top["subject_id"])).all()
        assert rec and '"via": "flag"' in rec[-1].detail

    token = csrf_of(page.text)
    # Without the CSRF token the action is refused and nothing changes.
    r = trp.post(f"/flags/{fid}/actions", data={"action": "assign", "assignee": "aud_trp"})
    assert r.status_code == 403
    # Confirming an open flag is not a step of the workflow: refused, naming the action.
    r = trp.post(f"/flags/{fid}/actions", data={"action": "confirm", "csrf_token": token})
    assert r.status_code == 409 and "You cannot confirm a flag that is open." in r.text
    # An auditor of another region cannot be given the case.
    r = trp.post(f"/flags/{fid}/actions", data={"action": "assign", "assignee": "aud_ben", "csrf_token": token})
    assert r.status_code == 422 and "outside their scope" in r.text
    r = trp.post(f"/flags/{fid}/actions", data={"action": "assign", "assignee": "aud_trp2", "csrf_token": token})
    assert r.status_code == 303
    trp2 = server.login("aud_trp2")
    token2 = csrf_of(trp2.get(f"/flags/{fid}").text)
    r = trp2.post(f"/flags/{fid}/actions", data={"action": "confirm", "comment": "dispensed after death",
                                                 "csrf_token": token2})
    assert r.status_code == 303
    shown = trp2.get(r.headers["location"])
    assert 'id="flag-timeline"' in shown.text and "dispensed after death" in shown.text

    detail = trp.get(f"/api/v1/flags/{fid}").json()
    assert detail["status"] == "confirmed" and detail["assignee"] == "aud_trp2"
    assert [(t["action"], t["by"], t["from_state"], t["to_state"]) for t in detail["timeline"]] == \
        [("assign", "aud_trp", "open", "assigned"), ("confirm", "aud_trp2", "assigned", "confirmed")]
    assert detail["allowed_actions"] == ["comment"]
    with server.Session() as s:
        for det in top["detector"].split(","):
            assert detector_precision(s)[det][1] == 1  # one confirmed
        actions = [r.action for r in s.scalars(select(AuditRecord).where(AuditRecord.object_id == fid)
                                              .order_by(AuditRecord.id))]
        assert [a for a in actions if a != "flag_read"][-2:] == ["flag_assign", "flag_confirm"]
        assert "flag_read" in actions  # reading the case through the API is audited too


def test_api_actions_and_error_bodies(server):
    nat, ben = server.login("aud_nat"), server.login("aud_ben")
    fid = _flags(ben)[0]["flag_id"]
    headers = _api_csrf(ben)
    post = lambda body, c=ben, h=headers: c.post(f"/api/v1/flags/{fid}/actions", json=body, headers=h)  # noqa: E731

    r = post({"action": "dismiss"})
    assert r.status_code == 409
    assert r.json()["error"] == {"field": "action",
                                 "message": "cannot dismiss a flag that is open; allowed when open: assign, comment"}
    r = post({"action": "approve"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "action"
    r = post({"comment": "x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "action"
    r = post({"action": "assign", "assignee": "aud_trp"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "assignee"
    r = post({"action": "assign", "assignee": "pharm_trp"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "assignee"
    r = post({"action": "comment"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "comment"
    r = post({"action": "assign", "assignee": "aud_ben"}, h={})
    assert r.status_code == 403  # a session without its CSRF token
    assert ben.post("/api/v1/flags/F-none/actions", json={"action": "comment", "comment": "x"},
                    headers=headers).status_code == 404
    trp = server.login("aud_trp")
    r = trp.post(f"/api/v1/flags/{fid}/actions", json={"action": "comment", "comment": "x"}, headers=_api_csrf(trp))
    assert r.status_code == 403

    assert post({"action": "assign", "assignee": "aud_ben"}).json()["status"] == "assigned"
    assert post({"action": "escalate", "comment": "to the inspectorate"}).json()["status"] == "escalated"
    # A national auditor takes it over and dismisses it.
    body = post({"action": "assign", "assignee": "aud_nat"}, c=nat, h=_api_csrf(nat)).json()
    assert body["status"] == "escalated" and body["assignee"] == "aud_nat"
    body = post({"action": "dismiss", "comment": "a referral"}, c=nat, h=_api_csrf(nat)).json()
    assert body["status"] == "dismissed"
    assert [t["action"] for t in body["timeline"]] == ["assign", "escalate", "assign", "dismiss"]
    assert post({"action": "confirm"}).status_code == 409
    with server.Session() as s:
        det = body["detectors"].split(",")[0]
        assert detector_precision(s)[det][2] == 1  # the latest verdict (dismissed) is what counts
        assert s.get(Flag, fid).status == "dismissed"


def test_case_export(server):
    nat = server.login("aud_nat")
    fid = _flags(nat)[0]["flag_id"]
    headers = _api_csrf(nat)
    nat.post(f"/api/v1/flags/{fid}/actions", json={"action": "assign", "assignee": "aud_nat"}, headers=headers)
    nat.post(f"/api/v1/flags/{fid}/actions", json={"action": "comment", "comment": "asked the pharmacy, «ça»"},
             headers=headers)
    with server.Session() as s:
        evidence = sorted(s.scalars(select(FlagEvidence.entry_id).where(FlagEvidence.flag_id == fid)))
    r = nat.get(f"/flags/{fid}/export", params={"format": "json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert f'filename="flag-{fid}.json"' in r.headers["content-disposition"]
    data = r.json()
    assert data["flag_id"] == fid and data["status"] == "assigned"
    assert sorted(e["entry_id"] for e in data["evidence"]) == evidence
    assert all(e["facility_code"] and e["kind"] and e["item_code"] for e in data["evidence"])
    assert [(t["action"], t["by"], t["comment"]) for t in data["timeline"]] == \
        [("assign", "aud_nat", None), ("comment", "aud_nat", "asked the pharmacy, «ça»")]

    r = nat.get(f"/flags/{fid}/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:3] == ["section", "flag_id", "detector"] and rows[1][:2] == ["flag", fid]
    assert sorted(row[1] for row in rows if row and row[0] == "evidence" and row[1] != "entry_id") == evidence
    timeline = [row for row in rows if row and row[0] == "timeline" and row[1] != "at"]
    assert [(row[2], row[3], row[7]) for row in timeline] == \
        [("aud_nat", "assign", ""), ("aud_nat", "comment", "asked the pharmacy, «ça»")]
    assert nat.get(f"/flags/{fid}/export", params={"format": "xml"}).status_code == 422
    ben_flag = _flags(nat, region="Benghazi")[0]["flag_id"]
    assert server.login("aud_trp").get(f"/flags/{ben_flag}/export").status_code == 403
    with server.Session() as s:
        assert s.scalars(select(AuditRecord).where(AuditRecord.action == "flag_exported",
                                                   AuditRecord.object_id == fid)).all()


def test_dismiss_and_escalate_without_a_comment_are_refused_in_the_readers_language(server):
    from tests.web.conftest import page_csrf

    nat = server.login("aud_nat")
    fid = _flags(nat)[0]["flag_id"]
    headers = _api_csrf(nat)
    assert nat.post(f"/api/v1/flags/{fid}/actions", json={"action": "assign", "assignee": "aud_nat"},
                    headers=headers).json()["status"] == "assigned"
    for action in ("dismiss", "escalate"):
        r = nat.post(f"/api/v1/flags/{fid}/actions", json={"action": action, "comment": "  "}, headers=headers)
        assert r.status_code == 422 and r.json()["error"] == {
            "field": "comment", "message": f"say why you {action} this flag: a comment is required"}

    expected = {
        "en": {"dismiss": "Say why you dismiss this flag: a comment is required.",
               "escalate": "Say why you escalate this flag: a comment is required."},
        "fr": {"dismiss": "Dites pourquoi vous écartez cette alerte : un commentaire est requis.",
               "escalate": "Dites pourquoi vous transmettez cette alerte : un commentaire est requis."},
        "ar": {"dismiss": "اذكر سبب رفض هذا التنبيه: التعليق مطلوب.",
               "escalate": "اذكر سبب تصعيد هذا التنبيه: التعليق مطلوب."},
    }
    for lang, messages in expected.items():
        assert nat.post("/language", data={"lang": lang, "csrf_token": page_csrf(nat)}).status_code == 303
        for action, message in messages.items():
            page = nat.post(f"/flags/{fid}/actions", data={"action": action, "comment": "",
                                                          "csrf_token": page_csrf(nat, f"/flags/{fid}")})
            assert page.status_code == 422
            assert message in page.text, (lang, action)
    with server.Session() as s:
        assert s.get(Flag, fid).status == "assigned"
    # With a comment, it goes through.
    page = nat.post(f"/flags/{fid}/actions", data={"action": "dismiss", "comment": "a referral, seen on paper",
                                                  "csrf_token": page_csrf(nat, f"/flags/{fid}")})
    assert page.status_code == 303
    with server.Session() as s:
        assert s.get(Flag, fid).status == "dismissed"
