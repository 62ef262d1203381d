"""The scan: idempotent, skips when nothing changed, merges, keeps dismissed flags dismissed,
exports exactly the contract's columns."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import func, select

from anomaly import scan
from anomaly.export import EXPORT_COLUMNS, query, to_csv, to_json
from anomaly.flags import UnknownFlag, detector_precision, record_verdict
from anomaly.hits import Hit
from anomaly.flags import merge
from anomaly.models import Flag, FlagEvidence
from stock.errors import InvalidEntry
from stock.importer import import_dataset
from tests.anomaly.helpers import at, post_all, stocked
from tests.stock.builders import entry
from sample_data import SMALL



@pytest.fixture
def scanned(session):
    import_dataset(session, SMALL)
    session.commit()
    report = scan.run(session)
    session.commit()
    return report


def test_rescan_adds_no_duplicates(session, scanned):
    assert scanned.new > 0 and not scanned.skipped
    again = scan.run(session)
    assert again.skipped
    forced = scan.run(session, force=True)
    session.commit()
    assert forced.new == 0 and forced.updated == 0
    assert session.scalar(select(func.count()).select_from(Flag)) == scanned.flags_total


def test_new_entries_make_the_next_scan_run(session, scanned):
    import_dataset(session, SMALL)  # nothing new
    session.commit()
    assert scan.run(session).skipped


def test_scan_is_deterministic_across_databases(session, scanned):
    rows = query(session)
    assert rows == query(session)
    assert all(0 <= r.score <= 1 for r in rows)
    ranks = [r.rank_score for r in rows]
    assert ranks == sorted(ranks, reverse=True)


def test_dismissed_flag_not_raised_again(session, scanned):
    top = query(session, limit=1)[0]
    record_verdict(session, top.flag_id, "dismissed", by="auditor-1", comment="known referral", now=top_time())
    session.commit()
    forced = scan.run(session, force=True)
    session.commit()
    assert forced.suppressed >= 1
    assert session.get(Flag, top.flag_id).status == "dismissed"
    assert [r.flag_id for r in query(session, status="open")].count(top.flag_id) == 0


def test_verdicts_measure_precision_and_rerank(session, scanned):
    rows = query(session)
    detector = rows[0].detector.split(",")[0]
    mine = [r for r in rows if detector in r.detector.split(",")]
    for r in mine:
        record_verdict(session, r.flag_id, "dismissed", by="auditor-1", comment=None, now=top_time())
    session.commit()
    precision, confirmed, dismissed = detector_precision(session)[detector]
    assert dismissed == len(mine) and confirmed == 0 and precision < 0.7
    with pytest.raises(InvalidEntry):
        record_verdict(session, rows[0].flag_id, "maybe", by="a", comment=None, now=top_time())
    with pytest.raises(UnknownFlag):
        record_verdict(session, "F-none", "confirmed", by="a", comment=None, now=top_time())


def test_export_has_exactly_the_contract_columns(session, scanned):
    rows = query(session)
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert tuple(parsed[0].keys()) == EXPORT_COLUMNS
    assert len(parsed) == scanned.flags_total
    first = parsed[0]
    assert first["severity"] in ("low", "medium", "high") and 0 <= float(first["score"]) <= 1
    assert first["subject"] in ("entry", "patient", "user", "facility_item", "transfer")
    evidence = set(session.scalars(select(FlagEvidence.entry_id).where(FlagEvidence.flag_id == first["flag_id"])))
    assert set(first["entry_ids"].split(";")) == evidence
    assert first["created_at"].endswith("Z")
    as_json = json.loads(to_json(rows))
    assert [tuple(o) for o in as_json][0] == EXPORT_COLUMNS


def test_filters(session, scanned):
    rows = query(session)
    one = rows[0]
    assert all(r.facility_code == one.facility_code for r in query(session, facility=one.facility_code))
    assert all(r.severity == "high" for r in query(session, severity="high"))
    assert query(session, region="Nowhere") == []
    det = one.detector.split(",")[0]
    assert all(det in r.detector for r in query(session, detector=det))


def test_same_evidence_from_two_detectors_merges():
    a = Hit("x", "entry", "E1", "H1", ("E1",), 0.6, "Reason A.")
    b = Hit("y", "entry", "E1", "H1", ("E1",), 0.9, "Reason B.")
    c = Hit("y", "entry", "E2", "H1", ("E2",), 0.5, "Reason C.")
    merged = {m.flag_id: m for m in merge([a, b, c])}
    assert len(merged) == 2
    m = merged[a.key]
    assert m.score == 0.9 and m.detectors == "x,y" and m.reason == "Reason B. Reason A."


def test_hand_built_scan_end_to_end(session):
    stocked(session)
    post_all(session, entry("dispense", 90, prescription_id="RX1", at=at(5, 23, 40), entry_id="D-over"))
    report = scan.run(session)
    session.commit()
    flagged = [r for r in query(session) if "D-over" in r.entry_ids.split(";")]
    assert flagged and flagged[0].facility_code == "H1"
    assert report.flags_total >= 1


def top_time():
    from datetime import datetime, timezone

    return datetime(2026, 7, 1, tzinfo=timezone.utc)


def test_growing_evidence_updates_one_flag_and_reopens_a_dismissed_one(session):
    stocked(session)
    post_all(session, entry("dispense", 5, health_card_id="LY9999999999", at=at(4), entry_id="G1"))
    scan.run(session)
    session.commit()
    [flag] = [r for r in query(session) if r.subject_id == "LY9999999999"]
    record_verdict(session, flag.flag_id, "dismissed", by="auditor-1", comment="visitor", now=top_time())
    session.commit()
    assert scan.run(session, force=True).suppressed == 1
    session.commit()
    post_all(session, entry("dispense", 5, health_card_id="LY9999999999", at=at(9), entry_id="G2"))
    scan.run(session)
    session.commit()
    again = [r for r in query(session) if r.subject_id == "LY9999999999"]
    assert [r.flag_id for r in again] == [flag.flag_id]
    assert again[0].entry_ids == "G1;G2" and again[0].status == "open"


def test_incremental_scan_reads_only_the_window_that_needs_it(session):
    from datetime import timedelta

    from stock.settings import Detection

    stocked(session)
    post_all(session, entry("dispense", 5, health_card_id="LY9999999999", at=at(4), entry_id="G1"))
    first = scan.run(session, settings=Detection(scan_lookback_days=10))
    session.commit()
    assert first.since is None and first.entries == 2
    post_all(session, entry("dispense", 5, health_card_id="LY8888888888", at=at(28), entry_id="G9"))
    second = scan.run(session, settings=Detection(scan_lookback_days=10))
    session.commit()
    assert second.since == at(28) - timedelta(days=10)
    assert second.entries == 1  # the old receipt and G1 lie outside the window
    assert {r.subject_id for r in query(session)} >= {"LY9999999999", "LY8888888888"}
    full = scan.run(session, force=True, settings=Detection(scan_lookback_days=10))
    assert full.since is None and full.entries == 3
