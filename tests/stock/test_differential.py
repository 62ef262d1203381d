"""The two engines of the write path held to one another: the same random sequence of entries
goes through post() one entry at a time (each refusal skipped) and through the bulk import.

- every row the import refuses, post() refused too, on the same field;
- the rows post() accepted import without a problem, to the same balances and chain heads.

Entries carry their recording times (recorded_at), so both build the same hash chains. Both
databases; reversals, counts, new lots without expiry, expired lots received (for destruction
or not), reasons with white space around them and bad signs all take part."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import migrations
from stock import chain
from stock.csvread import ImportFailed
from stock.db import session_factory
from stock.errors import DawaError
from stock.importer import import_dataset
from stock.ledger import NewEntry, post
from tests.conftest import PgSchema, _pg_or_skip, make_sqlite
from tests.stock.test_importer import FACILITIES, ITEMS, PATIENTS, PRESCRIPTIONS

T0 = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
COLUMNS = ("entry_id", "occurred_at", "facility_code", "kind", "item_code", "lot_number", "expiry_date", "quantity",
           "health_card_id", "prescription_id", "counterparty_code", "reason", "recorded_by", "document_number",
           "reverses", "recorded_at")

op = st.fixed_dictionaries({
    "kind": st.sampled_from(("receipt", "receipt", "dispense", "loss", "adjustment", "count", "transfer_out")),
    "facility": st.sampled_from(("H1", "HC2")),
    "item": st.sampled_from(("MOR10", "INSG")),
    "lot": st.sampled_from(("L1", "L2")),
    "n": st.integers(min_value=-3, max_value=40),
    "expiry": st.sampled_from((None, date(2028, 1, 31), date(2026, 1, 31))),  # none, good, expired at T0
    "reason": st.sampled_from((None, "correction", "destruction", " correction ", "destruction  ")),
    "back": st.integers(min_value=0, max_value=180),          # minutes the movement is back-dated
    "reverses": st.one_of(st.none(), st.integers(min_value=0, max_value=30)),
    "exact": st.booleans(),                                   # a reversal of the exact inverse quantity
})
ops = st.lists(op, min_size=1, max_size=30)


def rows_of(sequence) -> list[dict]:
    rows: list[dict] = []
    for i, o in enumerate(sequence):
        kind, q = o["kind"], Decimal(o["n"])
        row = {"entry_id": f"e{i}", "kind": kind, "facility_code": o["facility"], "item_code": o["item"],
               "lot_number": o["lot"], "quantity": q, "recorded_by": "u1",
               "recorded_at": T0 + timedelta(hours=i),
               "occurred_at": T0 + timedelta(hours=i) - timedelta(minutes=o["back"]),
               "expiry_date": o["expiry"],
               "reason": o["reason"] or ("correction" if kind in ("loss", "adjustment") else None)}
        if kind == "dispense":
            row["health_card_id"] = "LY0000000001"
        if kind == "transfer_out":
            row["counterparty_code"] = "WH-C"
        if o["reverses"] is not None and o["reverses"] < i:
            target = rows[o["reverses"]]
            row.update(kind="adjustment", facility_code=target["facility_code"], item_code=target["item_code"],
                       lot_number=target["lot_number"], reverses=target["entry_id"], reason="correction",
                       health_card_id=None, counterparty_code=None)
            if o["exact"]:
                sign = -1 if target["kind"] in ("receipt", "adjustment") else 1
                row["quantity"] = sign * target["quantity"] if target["kind"] != "count" else q
        rows.append(row)
    return rows


def through_post(Session, rows: list[dict]) -> dict[str, str]:
    """Post each row in turn, skipping refusals; the field of each refusal by entry_id."""
    refused: dict[str, str] = {}
    with Session() as s:
        for r in rows:
            e = NewEntry(**{k: v for k, v in r.items() if k != "recorded_at"})
            try:
                with s.begin_nested():
                    post(s, e, now=r["recorded_at"])
            except DawaError as exc:
                refused[r["entry_id"]] = exc.field
        s.commit()
    return refused


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def dataset(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    for name, body in (("facilities.csv", FACILITIES), ("items.csv", ITEMS), ("patients.csv", PATIENTS),
                       ("prescriptions.csv", PRESCRIPTIONS)):
        (folder / name).write_text(body, encoding="utf-8")
    lines = [",".join(COLUMNS)] + [",".join(cell(r.get(c)) for c in COLUMNS) for r in rows]
    (folder / "ledger.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def state(Session) -> tuple[list, list]:
    with Session() as s:
        stock = s.execute(text(
            "SELECT f.code, i.code, l.lot_number, b.on_hand FROM balance b JOIN facility f ON f.id = b.facility_id "
            "JOIN item i ON i.id = b.item_id JOIN lot l ON l.id = b.lot_id WHERE b.on_hand <> 0 ORDER BY 1, 2, 3"
        )).all()
        return chain.heads(s), stock


def master(Session, folder: Path) -> None:
    with Session() as s:
        import_dataset(s, dataset(folder, []), now=NOW)
        s.commit()


def compare(Posted, Imported, Again, tmp: Path, sequence) -> None:
    rows = rows_of(sequence)
    master(Posted, tmp / "m")
    refused = through_post(Posted, rows)
    with Imported() as s:
        try:
            import_dataset(s, dataset(tmp / "all", rows), now=NOW)
            s.commit()
            problems = {}
        except ImportFailed as exc:
            s.rollback()
            problems = {p.line - 2: p.column for p in exc.problems}
    told = {rows[i]["entry_id"]: field for i, field in problems.items()}
    assert bool(told) == bool(refused), (told, refused)
    for eid, field in told.items():
        assert refused.get(eid) == field, (eid, field, refused)
    kept = [r for r in rows if r["entry_id"] not in refused]
    with Again() as s:
        import_dataset(s, dataset(tmp / "kept", kept), now=NOW)
        s.commit()
    assert state(Again) == state(Posted)


SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=25, **SETTINGS)
@given(sequence=ops)
def test_post_and_import_agree_sqlite(tmp_path_factory, sequence):
    tmp = tmp_path_factory.mktemp("diff")
    engines = []
    try:
        for name in ("posted", "imported", "again"):
            (tmp / name).mkdir()
            engines.append(make_sqlite(tmp / name))
        compare(*(session_factory(e) for e in engines), tmp, sequence)
    finally:
        for e in engines:
            e.dispose()


@pytest.mark.postgres
@settings(max_examples=5, **SETTINGS)
@given(sequence=ops)
def test_post_and_import_agree_postgres(tmp_path_factory, sequence):
    url = _pg_or_skip()
    tmp = tmp_path_factory.mktemp("diff")
    schemas = [PgSchema(url) for _ in range(3)]
    try:
        for schema in schemas:
            migrations.upgrade(schema.engine)
        compare(*(session_factory(sc.engine) for sc in schemas), tmp, sequence)
    finally:
        for schema in schemas:
            schema.drop()


