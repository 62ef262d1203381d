"""Detection over monthly stock reports: each detector fires on its pattern with the numbers in its
reason, stays silent on a clean look-alike, and the scan keeps, exports and lists the flags."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from anomaly import export
from anomaly import reports as report_detection
from tests.anomaly.helpers import assert_reads_in_every_language
from anomaly import scan
from anomaly.models import Flag
from stock.importer import import_dataset
from stock.settings import Detection

FACILITIES = """code,name,region,kind,parent_code
H1,District Hospital,Abidjan,hospital,
HC1,Health Centre 1,Abidjan,health_center,
HC2,Health Centre 2,Abidjan,health_center,
HC3,Health Centre 3,Abidjan,health_center,
HC4,Health Centre 4,Abidjan,health_center,
HC5,Health Centre 5,Abidjan,health_center,
"""
ITEMS = """code,name,atc_code,form,unit,controlled,max_dispense_quantity
PILL,Levonorgestrel 0.03 mg,G03AC03,tablet,cycle,false,
"""
HEADER = "facility_code,item_code,period,opening,received,consumed,adjustment,closing,stockout_days,ordered"


def month(i: int) -> str:
    return f"{2018 + i // 12}-{i % 12 + 1:02d}"


def balanced(facility: str, consumptions: list[int], *, start: int = 500, received: int = 0) -> list[str]:
    """Consecutive months that add up and carry over, consuming as given."""
    rows, stock = [], start
    for i, used in enumerate(consumptions):
        closing = stock + received - used
        rows.append(f"{facility},PILL,{month(i)},{stock},{received},{used},0,{closing},0,")
        stock = closing
    return rows


def load(session, tmp_path: Path, rows: list[str], *, facilities: str = FACILITIES, items: str = ITEMS):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / "facilities.csv").write_text(facilities)
    (folder / "items.csv").write_text(items)
    (folder / "stock_reports.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    import_dataset(session, folder)
    session.commit()


def hits(session, name: str, settings: Detection | None = None):
    found = report_detection.scan_hits(session, settings or Detection(), [name])
    for hit in found:
        assert_reads_in_every_language(hit.reason)
    return found


def test_arithmetic_that_does_not_balance(session, tmp_path):
    load(session, tmp_path, ["H1,PILL,2019-03,100,50,30,-5,70,0,",    # 100+50-30-5 = 115: 45 missing
                             "HC1,PILL,2019-03,100,50,30,-5,115,0,",   # balances
                             "HC2,PILL,2019-03,100,0,30,,80,0,"])      # 10 more than the figures leave
    found = sorted(hits(session, "report_arithmetic"), key=lambda h: -h.score)
    assert [h.subject_id for h in found] == ["H1:PILL:2019-03", "HC2:PILL:2019-03"]
    short, over = found
    assert short.reason == (
        "H1 reported a closing stock of 70 cycles of Levonorgestrel 0.03 mg (PILL) for 2019-03, but opening 100 "
        "+ received 50 - consumed 30 + adjustment -5 = 115: 45 cycles fewer than the figures leave "
        "(30% of the stock handled).")
    assert short.details["reports"] == ["report:H1/PILL/2019-03"] and short.details["difference"] == -45
    assert 0.5 < short.score <= 1 and 0 < over.score < short.score
    assert "10 cycles more than the figures leave" in over.reason


def test_closing_that_does_not_carry_over(session, tmp_path):
    load(session, tmp_path, [
        "H1,PILL,2019-01,100,0,20,0,80,0,", "H1,PILL,2019-02,50,0,20,0,30,0,",    # 30 vanish in between
        "HC1,PILL,2019-01,100,0,20,0,80,0,", "HC1,PILL,2019-02,80,0,20,0,60,0,",  # carries over
        "HC2,PILL,2019-01,100,0,20,0,80,0,", "HC2,PILL,2019-03,50,0,20,0,30,0,",  # a month missing: not compared
    ])
    found = hits(session, "report_carryover")
    assert len(found) == 1
    (h,) = found
    assert h.subject_id == "H1:PILL:2019-02"
    assert h.reason == ("H1 closed 2019-01 with 80 cycles of Levonorgestrel 0.03 mg (PILL) but opened 2019-02 "
                        "with 50: 30 cycles disappeared between the two reports.")
    assert h.details["reports"] == ["report:H1/PILL/2019-01", "report:H1/PILL/2019-02"]
    assert 0.5 < h.score <= 1


def test_consumption_above_what_was_available(session, tmp_path):
    load(session, tmp_path, [
        "H1,PILL,2019-03,100,50,200,,0,0,",        # 200 consumed, 150 available, closing 0: does not add up either
        "HC1,PILL,2019-03,100,50,150,,0,0,",       # exactly what there was
        "HC2,PILL,2019-03,100,50,160,20,10,0,",    # 10 beyond opening + received, covered by +20
    ])
    found = {h.subject_id: h for h in hits(session, "report_overdraw")}
    assert set(found) == {"H1:PILL:2019-03", "HC2:PILL:2019-03"}
    over, covered = found["H1:PILL:2019-03"], found["HC2:PILL:2019-03"]
    assert over.reason == ("H1 reported consuming 200 cycles of Levonorgestrel 0.03 mg (PILL) in 2019-03 with only "
                           "150 available (opening 100 + received 50): 50 more than there was.")
    assert over.details["excess"] == 50 and 0.5 < over.score <= 1
    assert "a positive adjustment of 20 covers the 10 consumed beyond that" in covered.reason
    assert 0 < covered.score < over.score


def test_large_unexplained_negative_adjustment(session, tmp_path):
    steady = [30] * 6
    rows = balanced("H1", steady) + balanced("HC1", steady)
    rows[3] = "H1,PILL,2018-04,410,0,30,-100,280,0,"      # 100 written off against 30 a month
    rows[4] = "H1,PILL,2018-05,280,0,30,0,250,0,"
    rows[5] = "H1,PILL,2018-06,250,0,30,0,220,0,"
    rows[9] = "HC1,PILL,2018-04,410,0,30,-20,360,0,"      # 20 written off against 30 a month: ordinary
    rows[10] = "HC1,PILL,2018-05,360,0,30,0,330,0,"
    rows[11] = "HC1,PILL,2018-06,330,0,30,0,300,0,"
    load(session, tmp_path, rows)
    found = hits(session, "report_adjustment")
    assert [h.subject_id for h in found] == ["H1:PILL:2018-04"]
    assert found[0].reason == ("H1 adjusted Levonorgestrel 0.03 mg (PILL) down by 100 cycles in 2018-04, 24% of "
                               "the 410 it held, against 30 consumed that month and a median of 30 a month "
                               "(3.3x); the report gives no reason.")
    assert 0.4 <= found[0].score <= 1
    # No other detector sees anything wrong in these balanced, carried-over reports.
    for name in ("report_arithmetic", "report_carryover", "report_overdraw"):
        assert hits(session, name) == []


WOBBLE = [28, 31, 30, 29, 32, 30, 28, 31, 30, 29, 31, 30]


def test_consumption_far_from_own_history_and_peers(session, tmp_path):
    spike = WOBBLE[:9] + [150] + WOBBLE[10:]
    rows = balanced("HC1", spike, start=2000)
    for peer in ("HC2", "HC3", "HC4", "HC5"):
        rows += balanced(peer, WOBBLE, start=2000)
    load(session, tmp_path, rows)
    found = hits(session, "report_consumption")
    assert [h.subject_id for h in found] == ["HC1:PILL:2018-10"]
    h = found[0]
    assert h.reason.startswith("HC1 reported consuming 150 cycles of Levonorgestrel 0.03 mg (PILL) in 2018-10, "
                               "against its own median of 30 over 12 months (z=")
    assert "5.0x its median where 4 other health centres were at a median 1.0x theirs" in h.reason
    assert h.details["own_z"] > 3.5 and h.details["peer_z"] > 3.5 and 0.5 <= h.score <= 0.85


def test_a_rise_every_peer_shares_is_not_flagged(session, tmp_path):
    campaign = WOBBLE[:9] + [150] + WOBBLE[10:]
    rows = []
    for facility in ("HC1", "HC2", "HC3", "HC4", "HC5"):
        rows += balanced(facility, campaign, start=2000)
    load(session, tmp_path, rows)
    assert hits(session, "report_consumption") == []


def test_steady_consumption_with_zero_mad(session, tmp_path):
    # Every month exactly 30 (MAD = 0): one month at 150 stands out, a flat history does not.
    rows = balanced("HC1", [30] * 9 + [150] + [30] * 2, start=2000) + balanced("HC2", [30] * 12, start=2000)
    load(session, tmp_path, rows)
    found = hits(session, "report_consumption")
    assert [h.subject_id for h in found] == ["HC1:PILL:2018-10"]
    assert found[0].details["history_months"] == 11


def test_scan_keeps_report_flags_exports_and_lists_them(session, tmp_path):
    load(session, tmp_path, ["H1,PILL,2019-01,100,0,20,0,80,0,", "H1,PILL,2019-02,50,0,20,0,25,0,"])
    first = scan.run(session)
    session.commit()
    assert not first.skipped and first.new == 1  # carry-over and arithmetic on 2019-02 merge into one flag
    flag = session.scalars(select(Flag)).one()
    assert (flag.subject, flag.subject_id, flag.detectors) == (
        "facility_item", "H1:PILL:2019-02", "report_arithmetic,report_carryover")
    assert scan.run(session).skipped  # nothing new: no work, no duplicates
    session.commit()

    rows = export.query(session, detector="report_carryover")
    assert [r.subject_id for r in rows] == ["H1:PILL:2019-02"] and rows[0].facility_code == "H1"
    assert rows[0].entry_ids == ""
    assert "30 cycles disappeared" in rows[0].reason and "5 cycles fewer" in rows[0].reason
    (exported,) = csv.DictReader(io.StringIO(export.to_csv(export.query(session))))
    assert (exported["subject"], exported["subject_id"], exported["entry_ids"]) == (
        "facility_item", "H1:PILL:2019-02", "")

    # A resubmission with figures that add up is new: the scan runs, the old flag stays as it was.
    (tmp_path / "data" / "stock_reports.csv").write_text(HEADER + "\nH1,PILL,2019-02,80,0,20,0,60,0,\n")
    import_dataset(session, tmp_path / "data")
    session.commit()
    again = scan.run(session)
    session.commit()
    assert not again.skipped and again.new == 0
    assert session.scalar(select(func.count()).select_from(Flag)) == 1


@pytest.mark.parametrize("name", report_detection.NAMES)
def test_each_detector_is_silent_on_clean_reports(session, tmp_path, name):
    rows = []
    for facility in ("HC1", "HC2", "HC3", "HC4", "HC5"):
        rows += balanced(facility, WOBBLE, start=400, received=30)
    load(session, tmp_path, rows)
    assert hits(session, name) == []


REAL_DATA = Path(os.environ.get("DAWA_REAL_DATA") or Path(__file__).resolve().parents[3] / "shared" / "real_data"
                 / "cote_divoire_contraceptive_lmis")


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data not found at {REAL_DATA}")
def test_real_cote_divoire_reports_import_and_scan(session, tmp_path):
    """The whole public data set (38,842 monthly reports of 156 facilities) converts, imports without
    a single refusal and is scanned; its known features show up as the right detectors' flags."""
    from sample_data.cote_divoire import convert

    conversion = convert(REAL_DATA, tmp_path / "ci")
    assert (conversion.facilities, conversion.items, conversion.reports) == (156, 11, 38842)
    assert len(conversion.blanked) == 2  # stockout days of 50 and 300 in one month
    imported = import_dataset(session, tmp_path / "ci")
    session.commit()
    assert (imported.facilities, imported.items, imported.stock_reports.added) == (156, 11, 38842)

    result = scan.run(session)
    session.commit()
    assert not result.skipped and result.new > 0
    by_detector = {name: len(export.query(session, detector=name)) for name in report_detection.NAMES}
    # Every row of the source adds up; some closings do not carry over; some consumption exceeds
    # opening plus receipts and is covered by a positive adjustment.
    assert by_detector["report_arithmetic"] == 0
    assert by_detector["report_carryover"] > 0 and by_detector["report_overdraw"] > 0
    assert by_detector["report_adjustment"] > 0 and by_detector["report_consumption"] > 0
    assert by_detector["report_missing"] > 0 and by_detector["report_zero"] > 0 and by_detector["report_stockout"] > 0
    # 4,320 condoms (BTE/144) then 30: a unit change, not 4,290 boxes gone.
    assert not [r for r in export.query(session, detector="report_carryover") if r.subject_id.startswith("C2056:AS46000")]
    # Ties only between findings with the same evidence: few scores repeat at the top.
    top = [round(r.score, 6) for r in export.query(session)[:50]]
    assert max(top.count(x) for x in top) <= 3
    assert scan.run(session).skipped
    again = import_dataset(session, tmp_path / "ci").stock_reports
    assert (again.added, again.revised, again.unchanged) == (0, 0, 38842)


def test_stock_put_back_by_the_same_months_adjustment_is_no_loss(session, tmp_path):
    load(session, tmp_path, [
        "H1,PILL,2019-01,100,0,20,0,80,0,", "H1,PILL,2019-02,0,0,20,80,60,0,",     # zeroed, re-entered
        "HC1,PILL,2019-01,100,0,20,0,80,0,", "HC1,PILL,2019-02,0,0,20,30,10,0,",   # 50 of 80 not put back
    ])
    found = {h.subject_id: h for h in hits(session, "report_carryover")}
    assert list(found) == ["HC1:PILL:2019-02"]
    short = found["HC1:PILL:2019-02"]
    assert short.reason.endswith("80 cycles disappeared between the two reports; figures of 2019-02 undo 30 "
                                 "of it, leaving 50.")
    assert short.details["gap"] == -80 and short.details["not_undone"] == -50
