"""Ledger invariants under random sequences of movements, checked against a plain Python model.

Whatever the sequence: each refusal is the one the model predicts, every balance equals the sum of
its ledger effects and the model's stock, nothing is negative, no drift, and every chain verifies.
"""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from stock import balances, chain
from stock.db import make_engine, session_factory
from stock.errors import DawaError, InsufficientStock, InvalidEntry
from stock.ledger import post
from stock.masterdata import add_facility, add_item, add_patient
from stock.models import Balance, ChainHead, Facility, Item, LedgerEntry, Lot
from tests.conftest import make_sqlite
from tests.stock.builders import T0, entry

FACILITIES = ("PA", "PB")
ITEMS = {"TAB": "tablet", "SOL": "ml"}  # SOL takes quarter millilitres: exercises thousandths
LOTS = {"X1": date(2027, 5, 31), "X2": date(2028, 11, 30)}
KINDS = ("receipt", "dispense", "loss", "adjustment", "count", "transfer")

op = st.tuples(
    st.sampled_from(KINDS), st.sampled_from(FACILITIES), st.sampled_from(sorted(ITEMS)),
    st.sampled_from(sorted(LOTS)), st.integers(min_value=-30, max_value=60),
)
ops = st.lists(op, min_size=1, max_size=40)


def master_data(session, prefix: str = "") -> None:
    for code in FACILITIES:
        add_facility(session, prefix + code, f"Facility {prefix}{code}", "Region", "health_center")
    for code, unit in ITEMS.items():
        if session.scalar(select(Item.id).where(Item.code == code)) is None:
            add_item(session, code, f"Item {code}", unit)
    if prefix == "":
        add_patient(session, "LY0000000001")
    session.commit()


def quantity(kind: str, item: str, n: int) -> Decimal:
    """The op's number as this kind's quantity: signed non-zero for an adjustment, >= 0 for a
    count, > 0 otherwise; quarters of a millilitre for SOL."""
    if kind == "adjustment":
        n = n or 1
    elif kind == "count":
        n = abs(n)
    else:
        n = abs(n) or 1
    return Decimal(n) / 4 if ITEMS[item] == "ml" else Decimal(n)


def run(Session, prefix: str, sequence) -> None:
    """Apply ``sequence`` through post(), each entry in a savepoint, and hold the model to it."""
    model: dict[tuple[str, str, str], Decimal] = {}
    known_lots: set[tuple[str, str]] = set()
    posted: Counter[str] = Counter()
    ids = iter(range(10_000))
    lot_of = {lot: prefix + lot for lot in LOTS}

    def attempt(s, kind, fac, item, lot, q, counterparty=None) -> type | None:
        """Post one entry; return the error type it raised, None if it was recorded."""
        i = next(ids)
        kw = {"counterparty_code": counterparty} if counterparty else {}
        if kind in ("receipt", "transfer_in"):
            kw["expiry_date"] = LOTS[lot]
        e = entry(kind, q, facility=prefix + fac, item=item, lot=lot_of[lot],
                  entry_id=f"{prefix}p{i}", at=T0 + timedelta(minutes=i), **kw)
        try:
            with s.begin_nested():
                post(s, e)
        except DawaError as exc:
            # The rule book's refusals are InvalidEntry of a finer kind (stock.rules.Broken).
            return next(t for t in (InsufficientStock, InvalidEntry, DawaError) if isinstance(exc, t))
        posted[fac] += 1
        return None

    with Session() as s:
        for kind, fac, item, lot, n in sequence:
            q = quantity(kind, item, n)
            key = (fac, item, lot)
            have = model.get(key, Decimal(0))
            known = (item, lot) in known_lots
            if kind == "receipt":
                expect, after = None, have + q
            elif kind == "count":
                expect, after = None, q
            elif not known:
                expect, after = InvalidEntry, have  # a lot enters by a receipt or a count
            elif kind == "adjustment":
                expect, after = (InsufficientStock, have) if have + q < 0 else (None, have + q)
            else:
                expect, after = (InsufficientStock, have) if q > have else (None, have - q)

            if kind == "transfer":
                other = next(f for f in FACILITIES if f != fac)
                got = attempt(s, "transfer_out", fac, item, lot, q, counterparty=prefix + other)
                assert got is expect, (kind, key, have, q)
                if got is None:
                    model[key] = after
                    other_key = (other, item, lot)
                    assert attempt(s, "transfer_in", other, item, lot, q, counterparty=prefix + fac) is None
                    model[other_key] = model.get(other_key, Decimal(0)) + q
            else:
                got = attempt(s, kind, fac, item, lot, q)
                assert got is expect, (kind, key, have, q)
                if got is None:
                    model[key] = after
                    known_lots.add((item, lot))
            s.commit()

        check(s, prefix, model, posted)


def check(s, prefix: str, model, posted) -> None:
    facs = [prefix + f for f in FACILITIES]
    stored = {
        (fac[len(prefix):], item, lot[len(prefix):]): on_hand
        for fac, item, lot, on_hand in s.execute(
            select(Facility.code, Item.code, Lot.lot_number, Balance.on_hand)
            .join(Facility, Facility.id == Balance.facility_id)
            .join(Item, Item.id == Balance.item_id)
            .join(Lot, Lot.id == Balance.lot_id)
            .where(Facility.code.in_(facs)))
    }
    ledger = {
        (fac[len(prefix):], item, lot[len(prefix):]): total
        for fac, item, lot, total in s.execute(
            select(Facility.code, Item.code, Lot.lot_number, func.sum(LedgerEntry.effect))
            .join(Facility, Facility.id == LedgerEntry.facility_id)
            .join(Item, Item.id == LedgerEntry.item_id)
            .join(Lot, Lot.id == LedgerEntry.lot_id)
            .where(Facility.code.in_(facs))
            .group_by(Facility.code, Item.code, Lot.lot_number))
    }
    assert stored == ledger
    assert {k: v for k, v in stored.items() if v} == {k: v for k, v in model.items() if v}
    assert all(v >= 0 for v in stored.values())
    heads = dict(s.execute(select(Facility.code, ChainHead.length)
                           .join(Facility, Facility.id == ChainHead.facility_id)
                           .where(Facility.code.in_(facs))).all())
    assert heads == {prefix + f: posted[f] for f in FACILITIES}
    assert balances.drift(s) == []
    report = chain.verify(s)
    assert report.ok, [str(b) for b in report.breaks]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A migrated SQLite file with the master data; each example works on a copy of it."""
    folder = tmp_path_factory.mktemp("template")
    engine = make_sqlite(folder)
    with session_factory(engine)() as s:
        master_data(s)
    engine.dispose()  # checkpoints the WAL into the file
    return folder / "dawa.sqlite"


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_ledger_invariants_sqlite(template, tmp_path_factory, sequence):
    path = tmp_path_factory.mktemp("example") / "dawa.sqlite"
    shutil.copyfile(template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        run(session_factory(engine), "", sequence)
    finally:
        engine.dispose()


@pytest.mark.postgres
@settings(max_examples=10, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_ledger_invariants_postgres(pg_engine, sequence):
    """One schema for the test; each example writes to facilities and lots of its own."""
    Session = session_factory(pg_engine)
    prefix = f"{uuid.uuid4().hex[:6]}-"
    with Session() as s:
        if s.scalar(select(func.count()).select_from(Item)) == 0:
            master_data(s)  # items and the patient, once per schema
        master_data(s, prefix)
    run(Session, prefix, sequence)


def test_model_agrees_with_a_known_sequence(template, tmp_path):
    """The model itself, on a sequence whose outcome is worked out by hand."""
    path = tmp_path / "dawa.sqlite"
    shutil.copyfile(template, path)
    engine = make_engine(f"sqlite:///{path}")
    sequence = [
        ("dispense", "PA", "TAB", "X1", 1),     # lot unknown: refused
        ("receipt", "PA", "TAB", "X1", 10),
        ("dispense", "PA", "TAB", "X1", 11),    # insufficient
        ("transfer", "PA", "TAB", "X1", 4),     # PA 6, PB 4
        ("adjustment", "PB", "TAB", "X1", -5),  # insufficient
        ("count", "PB", "TAB", "X1", 3),        # PB 3
        ("receipt", "PA", "SOL", "X2", 5),      # 1.25 ml
        ("loss", "PA", "SOL", "X2", 2),         # 0.75 ml
    ]
    try:
        run(session_factory(engine), "", sequence)
        with session_factory(engine)() as s:
            assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 6
            got = sorted(str(b.on_hand) for b in s.scalars(select(Balance)))
            assert got == ["0.75", "3", "6"]
    finally:
        engine.dispose()
