"""Monthly report findings read in context: same-month peers, pack sizes, figures that undo each
other, months not accounted for, stock idle next door, and one flag per event."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from anomaly import reports as report_detection
from tests.anomaly.helpers import assert_reads_in_every_language
from anomaly import scan
from anomaly.models import Flag
from stock.settings import Detection
from tests.anomaly import test_report_detectors as report_tests

PEERS = [f"HC{i}" for i in range(1, 13)]
FACILITIES = "code,name,region,kind,parent_code\n" + "".join(
    f"{code},Health Centre {code},{'North' if i < 9 else 'South'},health_center,\n" for i, code in enumerate(PEERS))
ITEMS = """code,name,atc_code,form,unit,controlled,max_dispense_quantity
PILL,Levonorgestrel 0.03 mg,G03AC03,tablet,cycle,false,
CONDOM,Male condom BTE/144,,condom,box,false,
"""
USE = [28, 31, 30, 29, 32, 30, 28, 31, 30, 29, 31, 30]


def month(i: int) -> str:
    return f"{2018 + i // 12}-{i % 12 + 1:02d}"


def series(facility: str, item: str = "PILL", *, start: int = 300, received: int = 30, use=USE,
           adjust: dict[int, int] | None = None, opening: dict[int, int] | None = None) -> list[str]:
    """Twelve consecutive reports that add up; ``adjust`` puts an adjustment in month i, ``opening``
    overrides month i's opening (a carry-over gap) and the month still adds up from it."""
    rows, stock = [], start
    for i, used in enumerate(use):
        stock = (opening or {}).get(i, stock)
        adj = (adjust or {}).get(i, 0)
        closing = stock + received - used + adj
        rows.append(f"{facility},{item},{month(i)},{stock},{received},{used},{adj},{closing},0,")
        stock = closing
    return rows


def load(session, tmp_path: Path, rows: list[str]):
    report_tests.load(session, tmp_path, rows, facilities=FACILITIES, items=ITEMS)


def found(session, *names: str):
    found = report_detection.scan_hits(session, Detection(), list(names))
    for hit in found:
        assert_reads_in_every_language(hit.reason)
    return found


def test_a_write_off_wave_is_not_a_local_flag_and_a_lone_write_off_is(session, tmp_path):
    rows = []
    for i, facility in enumerate(PEERS):
        if i < 9:    # nine of twelve write off a recalled batch in month 5
            rows += series(facility, adjust={5: -120})
        elif i == 9:  # one writes off as much in another month, alone
            rows += series(facility, adjust={8: -120})
        else:
            rows += series(facility)
    load(session, tmp_path, rows)
    hits = found(session, "report_adjustment")
    assert [h.subject_id for h in hits] == ["HC10:PILL:2018-09"]
    assert "down by 120 cycles in 2018-09" in hits[0].reason and 0.5 < hits[0].score < 1


def test_a_pack_size_unit_change_is_not_a_loss(session, tmp_path):
    flat = [0] * 12
    rows = (series("HC1", "CONDOM", start=4320, received=0, use=flat, opening={5: 30})     # 4,320 = 30 x 144
            + series("HC2", "CONDOM", start=4320, received=0, use=flat, opening={5: 35})   # not a pack multiple
            + series("HC3", "CONDOM", start=300, received=0, use=flat))
    load(session, tmp_path, rows)
    hits = found(session, "report_carryover")
    assert [h.subject_id for h in hits] == ["HC2:CONDOM:2018-06"]
    assert "4,285 boxes disappeared between the two reports" in hits[0].reason


def test_consumption_counted_in_units_against_packs_is_not_an_overdraw(session, tmp_path):
    load(session, tmp_path, ["HC1,CONDOM,2019-03,2,0,288,286,0,0,",    # 288 = the 2 boxes of 144 it had
                             "HC2,CONDOM,2019-03,2,0,250,248,0,0,"])   # 250 is no number of boxes
    hits = found(session, "report_overdraw")
    assert [h.subject_id for h in hits] == ["HC2:CONDOM:2019-03"]
    assert "a positive adjustment of 248 covers the 248 consumed beyond that" in hits[0].reason


def test_a_figure_that_undoes_an_earlier_one_is_not_flagged(session, tmp_path):
    # HC1: 100 vanish between months 3 and 4 and are back in month 5; HC2: 100 vanish and a +1
    # "correction" comes back, which excuses one cycle, not 99.
    flat = dict(received=30, use=[30] * 12)  # 300 in stock every month
    rows = (series("HC1", opening={4: 200, 5: 300}, **flat) + series("HC2", opening={4: 200, 5: 201}, **flat)
            + series("HC3") + series("HC4"))
    load(session, tmp_path, rows)
    hits = found(session, "report_carryover", "report_arithmetic")
    assert [h.subject_id for h in hits] == ["HC2:PILL:2018-05"]
    assert hits[0].details["not_undone"] == -99
    assert hits[0].reason.endswith("100 cycles disappeared between the two reports; figures of 2018-06 undo 1 of "
                                   "it, leaving 99.")


def test_missing_months_and_all_zero_reports_are_flagged_once_per_facility(session, tmp_path):
    pill, condom = series("HC1"), series("HC1", "CONDOM", start=50, received=0, use=[1] * 12)
    missing = [r for r in pill + condom if f",{month(4)}," not in r and f",{month(5)}," not in r]
    zeros = series("HC2")
    zeros[6:9] = [f"HC2,PILL,{month(i)},0,0,0,0,0,0," for i in (6, 7, 8)]
    load(session, tmp_path, missing + zeros + [r for f in PEERS[2:9] for r in series(f)])
    (gap,) = found(session, "report_missing")
    assert (gap.subject, gap.subject_id) == ("facility", "HC1:2018-05")
    assert gap.reason.startswith("HC1 sent no report for 2 items for 2 months (2018-05 to 2018-06)")
    assert len(gap.details["reports"]) == 4
    (zero,) = found(session, "report_zero")
    assert (zero.subject, zero.subject_id) == ("facility", "HC2:2018-07")
    assert zero.reason.startswith("HC2 sent 3 reports of all zeros for 1 item (2018-07 to 2018-09)")
    # The stock did not vanish into the zeroed months and come back out of them.
    assert [h for h in found(session, "report_carryover", "report_arithmetic") if h.facility_code == "HC2"] == []


def test_a_stockout_while_a_neighbour_holds_months_of_stock(session, tmp_path):
    runs_out = [20] * 7 + [0] * 5  # 140 used up by month 6, nothing left after
    rows = (series("HC1", start=140, received=0, use=runs_out)
            + series("HC2", start=900, received=0, use=[20] * 12)      # holds 33 to 45 months of its use
            + series("HC10", start=140, received=0, use=runs_out)      # runs out in the south...
            + series("HC11", start=40, received=20, use=[20] * 12))    # ...where no one holds more than it uses
    load(session, tmp_path, rows)
    hits = found(session, "report_stockout")
    assert [h.subject_id for h in hits] == ["HC1:PILL:2018-07"]
    h = hits[0]
    assert h.details["holder"] == "HC2"
    assert "while HC2 in the same region held" in h.reason and "to spare" in h.reason


def test_one_event_is_one_flag_and_ties_follow_the_evidence(session, tmp_path):
    # HC1 loses stock between reports three months running: one event, one flag with one hit per
    # detector. HC2 and HC3 lose 40 and 80 once: different evidence, different scores.
    rows = (series("HC1", opening={3: 200, 4: 150, 5: 100}) + series("HC2", opening={6: 260})
            + series("HC3", opening={8: 220}) + [r for f in PEERS[3:9] for r in series(f)])
    load(session, tmp_path, rows)
    scan.run(session)
    session.commit()
    flags = {f.subject_id: f for f in session.scalars(select(Flag))}
    hc1 = [f for f in flags.values() if f.subject_id.startswith("HC1:")]
    assert len(hc1) == 1 and hc1[0].detectors == "report_carryover"
    assert "Also in" in hc1[0].reason
    small, large = flags["HC2:PILL:2018-07"], flags["HC3:PILL:2018-09"]
    assert large.score > small.score
