"""One pack dispensed twice: the same GS1 serial of the same item, reversals not counted."""

from __future__ import annotations

from sqlalchemy import select, update

from anomaly import scan
from anomaly.models import Flag
from stock.ledger import post, reverse
from stock.models import Item
from stock.settings import Detection
from tests.anomaly.helpers import at, post_all, run, stocked
from tests.stock.builders import entry


def two_shelves(session):
    stocked(session)
    post(session, entry("receipt", 100, facility="HC2", lot="L1", at=at(1, 8), entry_id="stock-HC2"))
    session.execute(update(Item).where(Item.code == "MOR10").values(gtin="05012345678900"))
    session.commit()


def test_reused_serial_fires_with_every_dispensing_and_the_numbers(session):
    two_shelves(session)
    post_all(session,
             entry("dispense", 10, serial_number="SN-7", at=at(1, 11), recorded_by="u17", entry_id="D1"),
             entry("dispense", 10, facility="HC2", serial_number="SN-7", at=at(4, 9), recorded_by="u9",
                   health_card_id="LY0000000009", entry_id="D2"),
             entry("dispense", 10, serial_number="SN-8", at=at(4, 10), entry_id="D3"),
             entry("dispense", 10, item="MOR10", serial_number="SN-9", at=at(5, 10), entry_id="D4"),
             entry("dispense", 10, at=at(5, 11), entry_id="D5"),
             entry("dispense", 10, at=at(5, 12), entry_id="D6"))  # no serial twice: nothing to say
    [hit] = run(session, "serials")
    assert hit.entry_ids == ("D1", "D2")
    assert hit.reason == ("Pack serial SN-7 of Morphine 10 mg tablet (GTIN 05012345678900) dispensed twice: "
                          "at H1 on 2026-03-01 by u17 to LY0000000001 and at HC2 on 2026-03-04 by u9 "
                          "to LY0000000009.")
    assert hit.subject == "entry" and hit.subject_id == "D1" and hit.facility_code == "H1"
    assert hit.details["dispensings"] == 2 and hit.details["facilities"] == ["H1", "HC2"]
    assert 0.8 < hit.score < 0.98


def test_more_reuses_score_higher_and_keep_one_flag(session):
    stocked(session)
    post_all(session, entry("dispense", 1, serial_number="S1", at=at(2), entry_id="A1"),
             entry("dispense", 1, serial_number="S1", at=at(3), entry_id="A2"))
    [two] = run(session, "serials")
    post_all(session, entry("dispense", 1, serial_number="S1", at=at(4), entry_id="A3"))
    [three] = run(session, "serials")
    assert "dispensed 3 times" in three.reason and three.entry_ids == ("A1", "A2", "A3")
    assert three.score > two.score
    assert three.key == two.key  # the same pack stays one flag as its evidence grows


def test_reversed_then_dispensed_again_is_silent(session):
    stocked(session)
    post_all(session, entry("dispense", 10, serial_number="SN-1", at=at(2), entry_id="R1"))
    reverse(session, "R1", reason="wrong patient", by="u1")
    session.commit()
    post_all(session, entry("dispense", 10, serial_number="SN-1", at=at(3), entry_id="R2"))
    assert run(session, "serials") == []


def test_same_serial_of_another_item_is_another_pack(session):
    stocked(session)
    post(session, entry("receipt", 100, item="INSG", lot="C1", at=at(1, 8)))
    session.commit()
    post_all(session, entry("dispense", 1, serial_number="X1", at=at(2)),
             entry("dispense", 1, item="INSG", lot="C1", serial_number="X1", at=at(3)))
    assert run(session, "serials") == []


def test_threshold_setting(session):
    stocked(session)
    post_all(session, entry("dispense", 1, serial_number="S1", at=at(2)),
             entry("dispense", 1, serial_number="S1", at=at(3)))
    assert run(session, "serials", Detection(serial_reuse_min_dispensings=3)) == []
    assert len(run(session, "serials", Detection(serial_reuse_min_dispensings=2))) == 1


def test_scan_keeps_the_flag(session):
    stocked(session)
    post_all(session, entry("dispense", 1, serial_number="S1", at=at(2), entry_id="K1"),
             entry("dispense", 1, serial_number="S1", at=at(3), entry_id="K2"))
    scan.run(session, only=["serials"])
    session.commit()
    [flag] = session.scalars(select(Flag).where(Flag.detectors == "serials")).all()
    assert "Pack serial S1" in flag.reason and flag.severity == "high"
    scan.run(session, only=["serials"], force=True)
    session.commit()
    assert len(session.scalars(select(Flag).where(Flag.detectors == "serials")).all()) == 1
