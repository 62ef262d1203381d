"""Rule detectors on small hand-built ledgers: each fires on its pattern, stays silent on the
legitimate look-alike, and its reason holds the right numbers."""

from __future__ import annotations

from datetime import date

from stock.masterdata import add_patient, add_prescription
from tests.anomaly.helpers import at, post_all, run, stocked
from tests.stock.builders import entry


def test_over_prescription_fires_with_ratio_and_user(session):
    stocked(session)
    post_all(session, entry("dispense", 90, prescription_id="RX1", at=at(5, 23, 40), recorded_by="u17",
                            entry_id="D-over"))
    [hit] = [h for h in run(session, "prescriptions") if h.entry_ids == ("D-over",)]
    assert "90 tablets" in hit.reason and "for 30" in hit.reason and "(3.0x)" in hit.reason
    assert "u17" in hit.reason and "23h" in hit.reason
    assert hit.score > 0.8
    assert "ceiling of 60 (1.5x)" in hit.reason  # the same fill is over the protocol ceiling too


def test_partial_fills_within_prescription_are_silent(session):
    stocked(session)
    post_all(session, entry("dispense", 10, prescription_id="RX1", at=at(5)),
             entry("dispense", 20, prescription_id="RX1", at=at(15)))
    assert [h for h in run(session, "prescriptions") if "RX1" in h.reason] == []


def test_refill_on_a_new_prescription_is_silent(session):
    stocked(session)
    add_prescription(session, "RX2", "LY0000000001", "H1", "MOR10", 30, 30, date(2026, 3, 31))
    session.commit()
    post_all(session, entry("dispense", 30, prescription_id="RX1", at=at(2)),
             entry("dispense", 30, prescription_id="RX2", at=at(31)))
    assert run(session, "prescriptions") == []


def test_cumulative_overfill_names_the_fill_that_crossed(session):
    stocked(session)
    post_all(session, entry("dispense", 30, prescription_id="RX1", at=at(2), entry_id="D-a"),
             entry("dispense", 30, prescription_id="RX1", at=at(3), entry_id="D-b"))
    [hit] = run(session, "prescriptions")
    assert hit.entry_ids == ("D-b",) and "total filled to 60" in hit.reason and "(2.0x)" in hit.reason


def test_over_protocol_ceiling(session):
    stocked(session)
    add_prescription(session, "RX9", "LY0000000001", "H1", "MOR10", 90, 30, date(2026, 3, 1))
    session.commit()
    post_all(session, entry("dispense", 90, prescription_id="RX9", at=at(3), entry_id="D-ceil"))
    [hit] = run(session, "prescriptions")
    assert "ceiling of 60 (1.5x)" in hit.reason


def test_controlled_without_prescription(session):
    stocked(session)
    stocked_gloves = entry("receipt", 100, item="GLOVE", lot="", expiry_date=None, at=at(1))
    post_all(session, stocked_gloves,
             entry("dispense", 20, prescription_id=None, at=at(4), entry_id="D-norx"),
             entry("dispense", 5, item="GLOVE", lot="", prescription_id=None, at=at(4)))
    hits = run(session, "no_prescription")
    assert [h.entry_ids for h in hits] == [("D-norx",)]
    assert "without a prescription" in hits[0].reason and "20 tablets" in hits[0].reason


def test_ghost_and_deceased_patients(session):
    stocked(session)
    add_patient(session, "LY0000000003", 1980, "F", "H1")
    session.commit()
    post_all(session,
             entry("dispense", 5, health_card_id="LY9999999999", at=at(4), entry_id="G1"),
             entry("dispense", 5, health_card_id="LY9999999999", at=at(6), entry_id="G2"),
             entry("dispense", 5, health_card_id="LY0000000002", at=at(7), entry_id="X1"),
             entry("dispense", 5, health_card_id="LY0000000003", at=at(8)))
    hits = {h.subject_id: h for h in run(session, "patients")}
    assert set(hits) == {"LY9999999999", "LY0000000002"}
    assert hits["LY9999999999"].entry_ids == ("G1", "G2") and "2 dispensings" in hits["LY9999999999"].reason
    assert "after the patient's death on 2026-02-01" in hits["LY0000000002"].reason
