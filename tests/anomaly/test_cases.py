"""Cases, corrections, population detectors and learning from verdicts, on small hand-built ledgers."""

from __future__ import annotations

import pytest

from anomaly import scan
from anomaly.export import query
from anomaly import rerank as rerank_model
from anomaly.flags import detector_precision, rerank
from anomaly.models import Flag, Verdict
from stock.importer import import_dataset
from stock.masterdata import add_facility, add_patient
from tests.anomaly.helpers import at, post_all, run, stocked
from tests.stock.builders import entry
from sample_data import SMALL


# ---------------------------------------------------------------- corrections

def test_keyed_then_corrected_dispensing_is_not_a_flag(session):
    """300 keyed against a prescription for 30; sixteen minutes later the same user adds 270 back."""
    stocked(session)
    post_all(session,
             entry("dispense", 300, prescription_id="RX1", at=at(5, 10, 0), entry_id="D-keyed"),
             entry("adjustment", 270, at=at(5, 10, 16), entry_id="A-fix"))
    assert run(session, "prescriptions") == []


def test_a_one_unit_correction_excuses_one_unit_of_an_over_dispense(session):
    stocked(session)
    post_all(session,
             entry("dispense", 90, prescription_id="RX1", at=at(5, 10, 0), entry_id="D-over"),
             entry("adjustment", 1, at=at(5, 10, 16), entry_id="A-fake"))
    hits = [h for h in run(session, "prescriptions") if "D-over" in h.entry_ids]
    assert hits and hits[0].details["filled_total"] == 89 and "(3.0x)" in hits[0].reason


def test_an_adjustment_before_the_dispensing_or_weeks_later_corrects_nothing(session):
    stocked(session)
    post_all(session,
             entry("adjustment", 60, at=at(4, 9), entry_id="A-before"),
             entry("dispense", 90, prescription_id="RX1", at=at(5, 10), entry_id="D-over"),
             entry("adjustment", 60, at=at(28, 9), entry_id="A-late"))
    [hit] = [h for h in run(session, "prescriptions") if "D-over" in h.entry_ids]
    assert hit.details["dispensed"] == 90


# ---------------------------------------------------------------- a national wave

def test_a_write_off_wave_across_many_sites_ranks_below_a_lone_write_off(session):
    """The same item written off as damaged at six health centres in the same month (a batch gone
    bad everywhere) is not six local losses; one facility writing off another item alone is."""
    stocked(session, facility="WH-C", item="GLOVE", quantity=100000)
    sites = [f"HC{i}" for i in range(3, 9)]
    for code in sites:
        add_facility(session, code, f"Health Centre {code}", "Tripoli", "health_center", parent_code="WH-C")
    add_facility(session, "HC9", "Health Centre 9", "Tripoli", "health_center", parent_code="WH-C")
    session.commit()
    moves = []
    for i, code in enumerate(sites + ["HC9"]):
        item = "INSG" if code == "HC9" else "GLOVE"
        moves += [entry("receipt", 500, facility=code, item=item, at=at(2, 8 + i % 8)),
                  entry("loss", 400, facility=code, item=item, reason="damaged", at=at(20, 9 + i % 8),
                        entry_id=f"W-{code}")]
    post_all(session, *moves)
    scan.run(session, only=["writeoffs"])
    session.commit()
    rows = query(session)
    assert len(rows) == 7
    assert rows[0].entry_ids == "W-HC9"
    lone = rows[0].score
    assert all(r.score < lone for r in rows[1:])


# ---------------------------------------------------------------- population detectors

def _staff(session, users=("u1", "u2", "u3")):
    for i in range(12):
        add_patient(session, f"LY10000000{i:02d}", 1980, "F", "H1")
    session.commit()


def test_controlled_without_prescription_to_a_small_circle_is_a_case_and_scattered_emergencies_are_not(session):
    stocked(session, quantity=5000)
    _staff(session)
    moves = []
    for day in range(2, 14):  # colleagues: prescribed doses, and one emergency dose each to someone new
        for k, user in enumerate(("u1", "u2", "u3")):
            moves.append(entry("dispense", 5, prescription_id="RX1", recorded_by=user, at=at(day, 9 + k)))
    for k, user in enumerate(("u1", "u2", "u3")):
        moves.append(entry("dispense", 2, prescription_id=None, recorded_by=user, health_card_id=f"LY10000000{k:02d}",
                           at=at(15, 9 + k)))
    for day in (3, 6, 9, 12, 15, 18):  # u9: the same two patients, again and again
        moves.append(entry("dispense", 10, prescription_id=None, recorded_by="u9",
                           health_card_id=f"LY10000000{10 + day % 2:02d}", at=at(day, 14), entry_id=f"C{day}"))
        moves.append(entry("dispense", 5, prescription_id="RX1", recorded_by="u9", at=at(day, 15)))
    post_all(session, *moves)
    [hit] = run(session, "circles")
    assert hit.subject == "user" and hit.subject_id == "u9" and hit.details["patients"] == 2
    assert set(hit.entry_ids) <= {f"C{d}" for d in (3, 6, 9, 12, 15, 18)} and hit.details["p"] < 0.01


def test_over_filling_beyond_colleagues_is_a_case_and_rounding_everyone_does_is_not(session):
    """Everyone gives 30 for 28 (a whole pack); u9 also gives 50 and 60 for 28 on a few prescriptions."""
    from datetime import date

    from stock.masterdata import add_prescription

    stocked(session, item="GLOVE", quantity=50000)
    _staff(session)
    moves, n = [], 0
    for day in range(2, 20):
        for k, user in enumerate(("u1", "u2", "u3", "u9")):
            n += 1
            code = f"RXP{n:04d}"
            add_prescription(session, code, "LY0000000001", "H1", "GLOVE", 28, 28, date(2026, 3, day))
            over = user == "u9" and day % 4 == 0
            moves.append(entry("dispense", 55 if over else 30, item="GLOVE", prescription_id=code, recorded_by=user,
                               at=at(day, 9 + k), **({"entry_id": f"O{n}"} if over else {})))
    session.commit()
    post_all(session, *moves)
    [hit] = run(session, "overfill")
    assert hit.subject_id == "u9" and hit.details["marked"] == 4
    assert all(e.startswith("O") for e in hit.entry_ids)


# ---------------------------------------------------------------- learning from verdicts

@pytest.fixture
def scanned_small(session):
    import_dataset(session, SMALL)
    session.commit()
    scan.run(session)
    session.commit()
    return session


def _open_rank(session, flag_id):
    return [r.flag_id for r in query(session, status="open")].index(flag_id)


def test_a_reranker_trained_on_verdicts_moves_a_confirmed_kind_of_case_up(scanned_small):
    session = scanned_small
    rows = query(session)
    by_kind: dict[str, list] = {}
    for r in rows:
        by_kind.setdefault(r.detector, []).append(r)
    kinds = [k for k, v in by_kind.items() if len(v) >= 3]
    assert len(kinds) >= 2
    # The kind whose best flag ranks lowest is the one auditors turn out to confirm.
    low = max(kinds, key=lambda k: rows.index(by_kind[k][0]))
    high = min(kinds, key=lambda k: rows.index(by_kind[k][0]))
    watched = by_kind[low][2]
    rivals = [r.flag_id for r in by_kind[high][2:]]
    before = _open_rank(session, watched.flag_id)
    for r, verdict in ((by_kind[low][0], "confirmed"), (by_kind[low][1], "confirmed"),
                       (by_kind[high][0], "dismissed"), (by_kind[high][1], "dismissed")):
        session.add(Verdict(flag_id=r.flag_id, verdict=verdict, comment=None, decided_by="aud", decided_at=at(30)))
        session.get(Flag, r.flag_id).status = verdict
    rerank(session)
    session.commit()
    after = _open_rank(session, watched.flag_id)
    assert after < before
    assert all(after < _open_rank(session, fid) for fid in rivals)


def test_without_verdicts_of_both_kinds_the_unsupervised_ranking_stands(scanned_small):
    session = scanned_small
    rows = query(session)
    session.add(Verdict(flag_id=rows[0].flag_id, verdict="confirmed", comment=None, decided_by="aud", decided_at=at(30)))
    assert rerank_model.learned_ranks(session) is None
    rerank(session)
    flags = session.query(Flag).all()
    precision = detector_precision(session)
    assert all(f.rank_score == pytest.approx(f.score * max(precision.get(d, (0.7,))[0] for d in f.detectors.split(",")),
                                             abs=1e-6) for f in flags)


def test_a_user_corrected_far_more_than_colleagues_is_a_case(session):
    stocked(session, quantity=5000)
    moves = []
    for day in range(2, 20):
        for k, user in enumerate(("u1", "u2", "u3")):
            moves.append(entry("dispense", 5, prescription_id="RX1", recorded_by=user, at=at(day, 9 + k)))
    for day in (4, 8, 12):  # u9 keys ten times the quantity, then "corrects" it
        moves += [entry("dispense", 50, prescription_id="RX1", recorded_by="u9", at=at(day, 14), entry_id=f"K{day}"),
                  entry("adjustment", 45, recorded_by="u9", at=at(day, 15), entry_id=f"J{day}")]
    post_all(session, *moves)
    [hit] = run(session, "corrected")
    assert hit.subject_id == "u9" and hit.details["marked"] == 3
    assert {"K4", "J4", "K8", "J8"} <= set(hit.entry_ids)


def test_two_users_out_of_hours_at_one_facility_do_not_hide_each_other(session):
    stocked(session, facility="HC2", quantity=50000)
    moves = []
    for day in range(2, 28):  # a day clinic: 8:00 to 16:00, some 1,000 dispensings in the month
        for k, user in enumerate(("u1", "u2", "u3", "u8", "u9")):
            moves += [entry("dispense", 5, facility="HC2", prescription_id=None, recorded_by=user,
                            at=at(day, 8 + h, 10 * k)) for h in range(8)]
    for day in (3, 7, 11, 15, 19, 23):
        moves += [entry("dispense", 10, facility="HC2", recorded_by="u8", at=at(day, 2)),
                  entry("dispense", 10, facility="HC2", recorded_by="u9", at=at(day, 3))]
    post_all(session, *moves)
    assert {h.subject_id for h in run(session, "afterhours")} == {"u8", "u9"}


def _clinic_months(session, raised: dict[str, dict[int, int]]):
    """Three health centres in one region dispensing GLOVE over ten months: each month 40 patients
    served and ``raised[facility][month]`` (default 10) dispensings of GLOVE among them."""
    for code in ("HC3", "HC4"):
        add_facility(session, code, f"Health Centre {code}", "Tripoli", "health_center", parent_code="WH-C")
    for i in range(40):
        add_patient(session, f"LY20000000{i:02d}", 1980, "F", "H1")
    session.commit()
    moves = []
    for code in ("HC2", "HC3", "HC4"):
        moves.append(entry("receipt", 100000, facility=code, item="GLOVE", at=at(1, 8, month=1)))
        moves.append(entry("receipt", 100000, facility=code, item="INSG", at=at(1, 8, month=1)))
        for month in range(1, 11):
            glove = raised.get(code, {}).get(month, 10)
            for i in range(40):
                item = "GLOVE" if i < glove else "INSG"
                moves.append(entry("dispense", 2, facility=code, item=item, prescription_id=None,
                                   health_card_id=f"LY20000000{i:02d}", at=at(2 + i % 25, 10, month=month)))
    post_all(session, *moves)


def test_months_of_raised_dispensing_at_one_facility_are_a_case(session):
    stocked(session)
    _clinic_months(session, {"HC3": {5: 22, 6: 24, 7: 22}})
    hits = run(session, "sustained")
    assert [h.subject_id for h in hits] == ["HC3:GLOVE"]
    assert hits[0].details["months"][0] in ("2026-05", "2026-04") and hits[0].details["p"] < 1e-4


def test_an_outbreak_across_the_region_is_not_a_local_case(session):
    stocked(session)
    wave = {5: 22, 6: 24, 7: 22}
    _clinic_months(session, {"HC2": wave, "HC3": wave, "HC4": wave})
    assert run(session, "sustained") == []
