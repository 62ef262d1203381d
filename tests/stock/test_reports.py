"""Monthly stock reports: stored as reported, malformed rows refused by file, line and column, all
or nothing; re-imports idempotent; a changed resubmission kept as a new revision."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stock.importer import ImportFailed, import_dataset
from stock.models import Facility, StockReport

FACILITIES = """code,name,region,kind,parent_code
WH,Central Medical Store,Abidjan,warehouse,
H1,District Hospital,Abidjan,hospital,WH
HC2,Health Centre,Abidjan,health_center,WH
"""
ITEMS = """code,name,atc_code,form,unit,controlled,max_dispense_quantity
PILL,Levonorgestrel 0.03 mg cycle,G03AC03,tablet,cycle,false,
INJ,Medroxyprogesterone 150 mg/ml,G03AC06,injection,ml,false,
"""
HEADER = "facility_code,item_code,period,opening,received,consumed,adjustment,closing,stockout_days,ordered"
ROWS = [
    "H1,PILL,2019-01,100,50,40,,110,0,60",
    "H1,PILL,2019-02,110,0,30,-5,75,0,",
    # Does not add up (100 + 0 - 30 - 0 = 70, not 90): stored as evidence, not refused.
    "H1,PILL,2019-03,75,0,30,,90,,",
    "HC2,INJ,2019-01,10.5,0,2.25,,8.25,3,5",
]


def write(folder: Path, rows=None, header: str = HEADER, **files) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "facilities.csv").write_text(files.get("facilities", FACILITIES))
    (folder / "items.csv").write_text(files.get("items", ITEMS))
    body = "\n".join([header, *(ROWS if rows is None else rows)]) + "\n"
    (folder / "stock_reports.csv").write_text(body)
    return folder


def reports(session) -> list[StockReport]:
    return list(session.scalars(select(StockReport).order_by(StockReport.id)))


def test_reports_are_stored_as_reported(session, tmp_path):
    report = import_dataset(session, write(tmp_path / "d"))
    session.commit()
    assert (report.stock_reports.added, report.stock_reports.revised, report.stock_reports.unchanged) == (4, 0, 0)
    rows = reports(session)
    assert [(r.period, r.revision) for r in rows] == [("2019-01", 1), ("2019-02", 1), ("2019-03", 1), ("2019-01", 1)]
    jan, feb, mar, inj = rows
    assert (jan.opening, jan.received, jan.consumed, jan.adjustment, jan.closing, jan.stockout_days, jan.ordered) == (
        Decimal(100), Decimal(50), Decimal(40), None, Decimal(110), 0, Decimal(60))
    assert feb.adjustment == Decimal(-5) and feb.ordered is None
    assert mar.closing == Decimal(90) and mar.stockout_days is None  # unbalanced, kept as written
    assert (inj.opening, inj.consumed, inj.closing) == (Decimal("10.5"), Decimal("2.25"), Decimal("8.25"))


def test_same_content_again_is_a_no_op(session, tmp_path):
    folder = write(tmp_path / "d")
    import_dataset(session, folder)
    session.commit()
    again = import_dataset(session, folder)
    session.commit()
    assert (again.stock_reports.added, again.stock_reports.revised, again.stock_reports.unchanged) == (0, 0, 4)
    assert session.scalar(select(func.count()).select_from(StockReport)) == 4


def test_a_changed_resubmission_is_a_new_revision_and_the_old_one_is_kept(session, tmp_path):
    import_dataset(session, write(tmp_path / "a"))
    session.commit()
    corrected = ["H1,PILL,2019-03,75,0,30,,45,0,"]
    result = import_dataset(session, write(tmp_path / "b", corrected)).stock_reports
    session.commit()
    assert (result.added, result.revised, result.unchanged) == (0, 1, 0)
    march = list(session.scalars(select(StockReport).where(StockReport.period == "2019-03")
                                 .order_by(StockReport.revision)))
    assert [(r.revision, r.closing, r.stockout_days) for r in march] == [(1, Decimal(90), None), (2, Decimal(45), 0)]
    # The corrected figures sent again change nothing; the first figures again are a third revision.
    assert import_dataset(session, write(tmp_path / "c", corrected)).stock_reports.unchanged == 1
    assert import_dataset(session, write(tmp_path / "d", [ROWS[2]])).stock_reports.revised == 1
    session.commit()
    assert session.scalar(select(func.max(StockReport.revision)).where(StockReport.period == "2019-03")) == 3


BAD = [
    ("XX,PILL,2019-01,1,0,0,,1,,", "facility_code", "unknown facility 'XX'"),
    ("H1,NOPE,2019-01,1,0,0,,1,,", "item_code", "unknown item 'NOPE'"),
    ("H1,PILL,2019-13,1,0,0,,1,,", "period", "'2019-13' is not a month (YYYY-MM)"),
    ("H1,PILL,2019-1,1,0,0,,1,,", "period", "'2019-1' is not a month (YYYY-MM)"),
    ("H1,PILL,,1,0,0,,1,,", "period", "required value is missing"),
    ("H1,PILL,2019-01,ten,0,0,,1,,", "opening", "'ten' is not a number"),
    ("H1,PILL,2019-01,1,-3,0,,1,,", "received", "-3 is negative"),
    ("H1,PILL,2019-01,1,0,-1,,1,,", "consumed", "-1 is negative"),
    ("H1,PILL,2019-01,1,0,0,,-1,,", "closing", "-1 is negative"),
    ("H1,PILL,2019-01,1,0,0,,1,,-4", "ordered", "-4 is negative"),
    ("H1,PILL,2019-01,1,0,0,x,1,,", "adjustment", "'x' is not a number"),
    ("H1,PILL,2019-01,1,0,0.5,,1,,", "consumed", "0.5 is not a whole number of cycles"),
    ("H1,PILL,2019-01,1,0,0,,1,32,", "stockout_days", "32 is outside 0..31"),
    ("H1,PILL,2019-01,1,0,0,,1,-1,", "stockout_days", "-1 is outside 0..31"),
    ("H1,PILL,2019-01,1,0,0,,1,2.5,", "stockout_days", "'2.5' is not a whole number"),
    ("H1,PILL,2019-01,1,0,,,1,,", "consumed", "required value is missing"),
]


@pytest.mark.parametrize("row,column,message", BAD, ids=[f"{c}-{m[:18]}" for _r, c, m in BAD])
def test_each_bad_row_kind_is_named_and_nothing_is_stored(session, tmp_path, row, column, message):
    # The bad row is on line 3, after a good one: the good one must not be stored either.
    folder = write(tmp_path / "d", ["H1,PILL,2018-12,0,100,0,,100,0,", row])
    with pytest.raises(ImportFailed) as failed:
        import_dataset(session, folder)
    session.rollback()
    assert [str(p) for p in failed.value.problems] == [f"stock_reports.csv:3: {column}: {message}"]
    assert session.scalar(select(func.count()).select_from(StockReport)) == 0
    assert session.scalar(select(func.count()).select_from(Facility)) == 0


def test_every_problem_is_reported_at_once(session, tmp_path):
    rows = ["H1,PILL,2019-01,1,0,0,,1,,", "XX,PILL,2019-02,1,0,0,,1,40,", "H1,PILL,2019-01,2,0,0,,2,,"]
    with pytest.raises(ImportFailed) as failed:
        import_dataset(session, write(tmp_path / "d", rows))
    assert [str(p) for p in failed.value.problems] == [
        "stock_reports.csv:3: facility_code: unknown facility 'XX'",
        "stock_reports.csv:3: stockout_days: 40 is outside 0..31",
        "stock_reports.csv:4: period: H1 reports PILL for 2019-01 again (first on line 2)",
    ]


def test_unknown_and_missing_columns_are_refused(session, tmp_path):
    with pytest.raises(ImportFailed) as failed:
        import_dataset(session, write(tmp_path / "d", ["H1,PILL,2019-01,1,0,0,,1,,,x"],
                                      header=HEADER.replace("closing", "closng") + ",note"))
    assert [str(p) for p in failed.value.problems] == [
        "stock_reports.csv:1: closing: required column is missing from the header",
        "stock_reports.csv:1: closng: unknown column (allowed: facility_code, item_code, period, opening, "
        "received, consumed, adjustment, closing, stockout_days, ordered)",
        "stock_reports.csv:1: note: unknown column (allowed: facility_code, item_code, period, opening, "
        "received, consumed, adjustment, closing, stockout_days, ordered)",
    ]


def test_reports_alone_import_into_a_database_that_knows_the_facilities(session, tmp_path):
    import_dataset(session, write(tmp_path / "a", []))
    session.commit()
    alone = tmp_path / "b"
    alone.mkdir()
    (alone / "stock_reports.csv").write_text(HEADER + "\n" + ROWS[0] + "\n")
    assert import_dataset(session, alone).stock_reports.added == 1
    session.commit()
    assert len(reports(session)) == 1


def test_dawa_import_prints_report_counts_and_names_bad_rows(tmp_path):
    from typer.testing import CliRunner

    from web.cli.main import app

    url = f"sqlite:///{tmp_path / 'dawa.sqlite'}"
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", url, "--env-file", str(tmp_path / ".env")]).exit_code == 0
    ok = runner.invoke(app, ["import", str(write(tmp_path / "d")), "--db", url, "-q"])
    assert ok.exit_code == 0
    assert "4 stock reports added, 0 revised, 0 already present" in " ".join(ok.output.split())
    bad = runner.invoke(app, ["import", str(write(tmp_path / "e", ["H1,PILL,2019-04,1,0,0,,1,99,"])), "--db", url, "-q"])
    assert bad.exit_code == 1
    assert "stock_reports.csv:2: stockout_days: 99 is outside 0..31" in bad.stderr
