"""The chain's encoders held to one another on awkward values: post()'s Python encoder, the SQL with
which SQLite and PostgreSQL rebuild the text while verifying, and the import's column-wise encoder.
All follow from stock.canonical.FIELDS; an entry's text must come out byte for byte the same."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

import migrations
from stock import canonical, chain
from stock.db import session_factory
from stock.importer import import_dataset
from stock.ledger import NewEntry, hash_values, post
from stock.models import Facility, Item, LedgerEntry, Lot, Patient
from tests.conftest import PgSchema, _pg_or_skip, make_sqlite
from tests.stock.test_importer import FACILITIES, ITEMS, PATIENTS, PRESCRIPTIONS

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
T0 = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
COLUMNS = ("entry_id", "occurred_at", "facility_code", "kind", "item_code", "lot_number", "expiry_date", "quantity",
           "health_card_id", "prescription_id", "counterparty_code", "reason", "recorded_by", "document_number",
           "reverses", "serial_number", "recorded_at")

AWKWARD = [
    # Texts a canonical text could mangle: quotes, percent signs (printf), backslashes, commas,
    # Arabic, combining marks, emoji, inner runs of spaces, an SQL comment, a long reason (a
    # ledger.csv cell is read without its surrounding spaces, so none have them).
    dict(entry_id="r-1", kind="receipt", item_code="INSG", lot_number="I-1/’x", quantity=Decimal("500.125"),
         expiry_date=date(2027, 6, 30), counterparty_code="Fournisseur « Médi », Tripoli",
         document_number="GRN-%s-%d-100%", reason="ٱستلام —  وصل ناقصا \\n ' \" -- ; ok",
         occurred_at=T0.replace(microsecond=999_999), recorded_at=T0 + timedelta(seconds=1)),
    dict(entry_id="d-1", kind="dispense", item_code="INSG", lot_number="I-1/’x", quantity=Decimal("0.001"),
         health_card_id="LY0000000001", prescription_id="RX-%%-e\u0301", serial_number="(A)+b/9_?%",
         occurred_at=T0 + timedelta(hours=1, microseconds=999_600), recorded_at=T0 + timedelta(hours=1, seconds=2)),
    dict(entry_id="c-1", kind="count", item_code="INSG", lot_number="I-1/’x", quantity=Decimal("123.4"),
         reason="💊 counted twice " + "x" * 1800,
         occurred_at=T0 + timedelta(hours=2, microseconds=1), recorded_at=T0 + timedelta(hours=2, seconds=3)),
    dict(entry_id="a-1", kind="adjustment", item_code="INSG", lot_number="I-1/’x", quantity=Decimal("-0.5"),
         reason="found a broken vial", reverses=None,
         occurred_at=datetime(2026, 3, 1, 12, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
         recorded_at=T0 + timedelta(hours=9)),
    dict(entry_id="u-1", kind="receipt", item_code="MOR10", lot_number="", quantity=Decimal("999999999"),
         occurred_at=T0 + timedelta(hours=10), recorded_at=T0 + timedelta(hours=10)),
]


def rows() -> list[dict]:
    return [{"facility_code": "H1", "recorded_by": "u-é’1", **r} for r in AWKWARD]


def cell(value) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def dataset(folder: Path, entries: list[dict]) -> Path:
    folder.mkdir(parents=True)
    for name, body in (("facilities.csv", FACILITIES), ("items.csv", ITEMS), ("patients.csv", PATIENTS),
                       ("prescriptions.csv", PRESCRIPTIONS)):
        (folder / name).write_text(body, encoding="utf-8")
    with (folder / "ledger.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows([cell(r.get(c)) for c in COLUMNS] for r in entries)
    return folder


def python_texts(session) -> dict[str, bytes]:
    """Each entry's canonical text as post() encodes it, from what is stored."""
    out = {}
    for e in session.scalars(select(LedgerEntry)):
        lot = session.get(Lot, e.lot_id)
        card = session.get(Patient, e.patient_id).health_card_id if e.patient_id else None
        values = hash_values(e, session.get(Facility, e.facility_id).code, session.get(Item, e.item_id).code, lot, card)
        out[e.entry_id] = canonical.encode(values)
    return out


def sql_texts(session) -> dict[str, bytes]:
    """Each entry's canonical text as the database writes it while verifying."""
    return {row[2]: (canonical.VERSION + canonical.SEP + row[3]).encode() for row in chain._rows(session)}


def check(Posted, Imported, tmp: Path) -> None:
    with Posted() as s:
        import_dataset(s, dataset(tmp / "master", []), now=NOW)
        for r in rows():
            post(s, NewEntry(**{k: v for k, v in r.items() if k != "recorded_at"}), now=r["recorded_at"])
        s.commit()
    with Imported() as s:
        import_dataset(s, dataset(tmp / "all", rows()), now=NOW)
        s.commit()
    found = {}
    for name, Session in (("posted", Posted), ("imported", Imported)):
        with Session() as s:
            py, sql = python_texts(s), sql_texts(s)
            assert len(py) == len(AWKWARD)
            for entry_id, text in py.items():
                assert sql[entry_id] == text, (name, entry_id, sql[entry_id], text)
            assert chain.verify(s).ok, (name, [str(b) for b in chain.verify(s).breaks])
            found[name] = (chain.heads(s), py)
    # The import's own encoder built the same chain as post(): the same texts, the same heads.
    assert found["imported"] == found["posted"]
    texts = found["posted"][1]
    assert texts["d-1"].endswith(b"\x1f(A)+b/9_?%") and texts["u-1"].count(b"\x1f") == 19


def test_encoders_agree_on_awkward_values_sqlite(tmp_path):
    engines = []
    try:
        for name in ("posted", "imported"):
            (tmp_path / name).mkdir()
            engines.append(make_sqlite(tmp_path / name))
        check(*(session_factory(e) for e in engines), tmp_path)
    finally:
        for e in engines:
            e.dispose()


@pytest.mark.postgres
def test_encoders_agree_on_awkward_values_postgres(tmp_path):
    url = _pg_or_skip()
    schemas = [PgSchema(url) for _ in range(2)]
    try:
        for schema in schemas:
            migrations.upgrade(schema.engine)
        check(*(session_factory(sc.engine) for sc in schemas), tmp_path)
    finally:
        for schema in schemas:
            schema.drop()


def test_fields_declare_the_canonical_text_unchanged():
    """The declaration is the text chains were written with: renaming, reordering or re-encoding a
    field would break every stored chain."""
    assert [(f.name, f.encoding) for f in canonical.FIELDS] == [
        ("facility_code", "text"), ("chain_seq", "int"), ("entry_id", "text"), ("kind", "text"),
        ("item_code", "text"), ("lot_number", "text"), ("expiry_date", "date"), ("quantity_milli", "int"),
        ("effect_milli", "int"), ("book_milli", "int"), ("occurred_us", "epoch_us"), ("recorded_us", "epoch_us"),
        ("recorded_by", "text"), ("health_card_id", "text"), ("prescription_ref", "text"), ("counterparty", "text"),
        ("reason", "text"), ("document_number", "text"), ("reverses", "text"), ("serial_number", "text")]
    assert [f.name for f in canonical.OPTIONAL] == ["serial_number"]
