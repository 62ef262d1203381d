"""Tamper evidence: whatever is changed behind the write path's back, verify names where.

The attacker here has the database file (SQLite) and drops the append-only triggers first; on
PostgreSQL the trigger itself refuses. Exported chain heads catch the careful attacker who also
rewinds or recomputes the chain.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from stock import chain, chain_read
from stock.db import make_engine, session_factory
from stock.ledger import hash_values, post
from stock.models import Facility, Item, LedgerEntry, Lot, Patient
from tests.conftest import make_sqlite
from tests.stock.builders import T0, build_world, entry

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def populate(session) -> dict[str, list[str]]:
    """Three facilities with several entries each, every kind, each facility on its own lot
    (so that altering one lot touches one chain). Returns entry ids per facility in chain order."""
    build_world(session)
    at = iter(T0 + timedelta(hours=h) for h in range(100))
    post(session, [
        entry("receipt", 1000, facility="WH-C", lot="W1", counterparty_code="MEDIPHARM", at=next(at)),
        entry("receipt", 500, facility="WH-C", item="GLOVE", lot="", expiry_date=None, at=next(at)),
        entry("transfer_out", 100, facility="WH-C", lot="W1", counterparty_code="H1",
              document_number="WB-1", at=next(at)),
        entry("loss", 5, facility="WH-C", lot="W1", at=next(at)),
        entry("receipt", 100, facility="H1", lot="L1", at=next(at)),
        entry("transfer_in", 100, facility="H1", lot="W1", counterparty_code="WH-C",
              document_number="WB-1", at=next(at)),
        entry("dispense", 10, facility="H1", lot="L1", prescription_id="RX1", at=next(at)),
        entry("dispense", 5, facility="H1", lot="W1", at=next(at)),
        entry("adjustment", -2, facility="H1", lot="L1", at=next(at)),
        entry("count", 85, facility="H1", lot="L1", at=next(at)),
        entry("receipt", "50.5", facility="HC2", item="INSG", lot="C1",
              expiry_date=date(2027, 6, 30), at=next(at)),
        entry("dispense", "2.5", facility="HC2", item="INSG", lot="C1",
              health_card_id="LY0000000002", at=next(at)),
        entry("loss", 1, facility="HC2", item="INSG", lot="C1", reason="expired", at=next(at)),
    ])
    session.commit()
    return chain_ids(session)


def chain_ids(session) -> dict[str, list[str]]:
    rows = session.execute(
        select(Facility.code, LedgerEntry.entry_id)
        .join(Facility, Facility.id == LedgerEntry.facility_id)
        .order_by(Facility.code, LedgerEntry.chain_seq)
    )
    out: dict[str, list[str]] = {}
    for code, entry_id in rows:
        out.setdefault(code, []).append(entry_id)
    return out


def raw(engine, sql: str, **params) -> None:
    """SQL behind the application's back, in its own committed transaction."""
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def drop_triggers(engine) -> None:
    raw(engine, "DROP TRIGGER ledger_entry_no_update")
    raw(engine, "DROP TRIGGER ledger_entry_no_delete")


def verify(engine, against=None) -> chain.VerifyReport:
    with session_factory(engine, read_only=True)() as s:
        return chain.verify(s, against=against)


def assert_sound_with_heads(engine, folder: Path, *, facilities: int, entries: int) -> None:
    """The ledger verifies with no break, counts as expected, and verifies again against the
    chain heads exported from it."""
    report = verify(engine)
    assert report.ok, [str(b) for b in report.breaks]
    assert (report.facilities, report.entries) == (facilities, entries)
    with session_factory(engine, read_only=True)() as s:
        chain.write_heads(s, folder / "heads.json", NOW)
    assert verify(engine, against=chain.read_heads(folder / "heads.json")).ok


def only_break(report: chain.VerifyReport) -> chain.ChainBreak:
    assert not report.ok
    assert len(report.breaks) == 1, [str(b) for b in report.breaks]
    return report.breaks[0]


@pytest.fixture
def world(session):
    ids = populate(session)
    return session, ids


def test_clean_ledger_verifies(world):
    session, ids = world
    report = chain.verify(session)
    assert report.ok, [str(b) for b in report.breaks]
    assert report.facilities == 3
    assert report.entries == 13 == sum(len(v) for v in ids.values())
    assert [len(ids[c]) for c in ("H1", "HC2", "WH-C")] == [6, 3, 4]
    heads = {h["facility_code"]: h for h in chain.heads(session)}
    assert heads["H1"]["length"] == 6
    last = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == ids["H1"][-1])).one()
    assert heads["H1"]["hash"] == last.chain_hash


def test_chain_covers_business_codes_and_links_each_entry(world):
    """Each hash is recomputable from the entry's business content and the previous hash."""
    session, ids = world
    prev = chain.GENESIS
    for entry_id in ids["H1"]:
        e = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).one()
        lot = session.get(Lot, e.lot_id)
        card = session.get(Patient, e.patient_id).health_card_id if e.patient_id else None
        item = session.get(Item, e.item_id).code
        assert e.chain_hash == chain.link(prev, hash_values(e, "H1", item, lot, card))
        prev = e.chain_hash


def test_sqlite_triggers_refuse_update_and_delete(sqlite_engine):
    with session_factory(sqlite_engine)() as s:
        ids = populate(s)
    for sql in ("UPDATE ledger_entry SET quantity = quantity + 1000 WHERE entry_id = :e",
                "DELETE FROM ledger_entry WHERE entry_id = :e"):
        with pytest.raises(DBAPIError) as err:
            raw(sqlite_engine, sql, e=ids["H1"][0])
        assert "append-only" in str(err.value)
    assert verify(sqlite_engine).ok


@pytest.fixture
def tampered(sqlite_engine):
    """A populated SQLite ledger whose append-only triggers an attacker has dropped."""
    with session_factory(sqlite_engine)() as s:
        ids = populate(s)
    drop_triggers(sqlite_engine)
    return sqlite_engine, ids


@pytest.mark.parametrize("k", [1, 3, 6])
def test_altered_quantity_named_at_its_position(tampered, k):
    engine, ids = tampered
    raw(engine, "UPDATE ledger_entry SET quantity = quantity + 1000 WHERE entry_id = :e",
        e=ids["H1"][k - 1])
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("H1", k, ids["H1"][k - 1])
    assert "altered" in b.problem


def test_altered_occurred_at_and_patient_caught(tampered):
    engine, ids = tampered
    raw(engine, "UPDATE ledger_entry SET occurred_at = '2026-02-01 00:00:00.000000' WHERE entry_id = :e",
        e=ids["WH-C"][1])
    # The patient on HC2's dispense (position 2) is swapped for another in the register.
    raw(engine, "UPDATE patient SET health_card_id = 'LY0000000099' WHERE health_card_id = 'LY0000000002'")
    report = verify(engine)
    got = {(b.facility_code, b.position, b.entry_id) for b in report.breaks}
    assert got == {("WH-C", 2, ids["WH-C"][1]), ("HC2", 2, ids["HC2"][1])}


def test_deleted_middle_entry_names_the_next(tampered):
    engine, ids = tampered
    raw(engine, "DELETE FROM ledger_entry WHERE entry_id = :e", e=ids["H1"][2])
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("H1", 3, ids["H1"][3])
    assert "deleted" in b.problem


def test_deleted_last_entry_reported_against_chain_head(tampered):
    engine, ids = tampered
    raw(engine, "DELETE FROM ledger_entry WHERE entry_id = :e", e=ids["WH-C"][-1])
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("WH-C", 4, None)
    assert "records 4 entries, only 3 remain" in b.problem


def test_deleted_whole_chain_reported(tampered):
    engine, ids = tampered
    raw(engine, "DELETE FROM ledger_entry WHERE facility_id = (SELECT id FROM facility WHERE code = 'HC2')")
    b = only_break(verify(engine))
    assert (b.facility_code, b.position) == ("HC2", 1)
    assert "none remain" in b.problem


def _forge_tail(engine, facility: str, new_id: str, *, correct_hash: bool) -> None:
    """Copy the facility's last row as a new entry at the end of its chain, out of band."""
    with session_factory(engine)() as s:
        fid = s.scalar(select(Facility.id).where(Facility.code == facility))
        row = s.execute(text("SELECT * FROM ledger_entry WHERE facility_id = :f ORDER BY chain_seq DESC"),
                        {"f": fid}).mappings().first()
        cols = {k: v for k, v in row.items() if k != "id"}
        cols["entry_id"] = new_id
        cols["chain_seq"] = row["chain_seq"] + 1
        cols["chain_hash"] = "f" * 64
        if correct_hash:
            # The algorithm is public: anyone with the file can compute a hash that links.
            orig = s.get(LedgerEntry, row["id"])
            forged = LedgerEntry(entry_id=new_id, chain_seq=cols["chain_seq"], kind=orig.kind,
                                 quantity=orig.quantity, effect=orig.effect,
                                 book_quantity=orig.book_quantity, occurred_at=orig.occurred_at,
                                 recorded_at=orig.recorded_at, recorded_by=orig.recorded_by,
                                 prescription_ref=orig.prescription_ref, counterparty=orig.counterparty,
                                 reason=orig.reason, document_number=orig.document_number,
                                 reverses=orig.reverses)
            card = s.get(Patient, orig.patient_id).health_card_id if orig.patient_id else None
            cols["chain_hash"] = chain.link(orig.chain_hash, hash_values(
                forged, facility, s.get(Item, orig.item_id).code, s.get(Lot, orig.lot_id), card))
        s.execute(text(f"INSERT INTO ledger_entry ({', '.join(cols)}) "
                       f"VALUES ({', '.join(':' + k for k in cols)})"), cols)
        s.commit()


def test_forged_tail_row_named(tampered):
    engine, ids = tampered
    _forge_tail(engine, "H1", "FORGED-1", correct_hash=False)
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("H1", 7, "FORGED-1")


def test_forged_tail_row_with_recomputed_hash_named(tampered):
    """A correctly linked row past the chain head: only the head tells it from a real entry."""
    engine, ids = tampered
    _forge_tail(engine, "HC2", "FORGED-2", correct_hash=True)
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("HC2", 4, "FORGED-2")
    assert "inserted out of band" in b.problem


def test_deleted_chain_head_row_reported(tampered):
    engine, ids = tampered
    raw(engine, "DELETE FROM chain_head WHERE facility_id = (SELECT id FROM facility WHERE code = 'H1')")
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("H1", 1, ids["H1"][0])


def test_altered_lot_expiry_caught_in_its_facility_only(tampered):
    engine, ids = tampered
    raw(engine, "UPDATE lot SET expiry_date = '2030-01-01' WHERE lot_number = 'C1'")
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("HC2", 1, ids["HC2"][0])


def test_altered_facility_code_caught(tampered):
    engine, ids = tampered
    raw(engine, "UPDATE facility SET code = 'WH-X' WHERE code = 'WH-C'")
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("WH-X", 1, ids["WH-C"][0])


def test_heads_file_then_more_entries_still_verifies(world, tmp_path):
    session, ids = world
    path = tmp_path / "heads.json"
    written = chain.write_heads(session, path, NOW)
    assert {h["facility_code"] for h in written} == {"H1", "HC2", "WH-C"}
    exported = chain.read_heads(path)
    assert exported == {h["facility_code"]: (h["length"], h["hash"]) for h in chain.heads(session)}
    assert exported["H1"][0] == 6
    post(session, [entry("receipt", 7, facility="H1", lot="L1", at=T0 + timedelta(days=3)),
                   entry("dispense", 1, facility="HC2", item="INSG", lot="C1", at=T0 + timedelta(days=3))])
    session.commit()
    report = chain.verify(session, against=exported)
    assert report.ok, [str(b) for b in report.breaks]
    assert report.entries == 15


def test_exported_heads_catch_a_cut_tail_with_rewound_head(tampered, tmp_path):
    engine, ids = tampered
    path = tmp_path / "heads.json"
    with session_factory(engine)() as s:
        chain.write_heads(s, path, NOW)
    # The careful attacker removes H1's last two entries and winds its chain head back to match.
    for entry_id in ids["H1"][-2:]:
        raw(engine, "DELETE FROM ledger_entry WHERE entry_id = :e", e=entry_id)
    raw(engine, "UPDATE chain_head SET length = 4, head_hash = (SELECT chain_hash FROM ledger_entry "
                "WHERE entry_id = :e) WHERE facility_id = (SELECT id FROM facility WHERE code = 'H1')",
        e=ids["H1"][3])
    assert verify(engine).ok
    b = only_break(verify(engine, against=chain.read_heads(path)))
    assert (b.facility_code, b.position) == ("H1", 6)
    assert "cut off or rewritten" in b.problem


def _rehash(engine, facility: str) -> None:
    """Recompute a facility's whole chain and head from the rows as they stand: a perfect forger."""
    with session_factory(engine)() as s:
        prev = chain.GENESIS
        fid = s.scalar(select(Facility.id).where(Facility.code == facility))
        for e in s.scalars(select(LedgerEntry).where(LedgerEntry.facility_id == fid)
                           .order_by(LedgerEntry.chain_seq)).all():
            card = s.get(Patient, e.patient_id).health_card_id if e.patient_id else None
            h = chain.link(prev, hash_values(e, facility, s.get(Item, e.item_id).code,
                                             s.get(Lot, e.lot_id), card))
            s.execute(text("UPDATE ledger_entry SET chain_hash = :h WHERE id = :i"), {"h": h, "i": e.id})
            prev = h
        s.execute(text("UPDATE chain_head SET head_hash = :h WHERE facility_id = :f"), {"h": prev, "f": fid})
        s.commit()


def test_exported_heads_catch_a_recomputed_chain(tampered, tmp_path):
    engine, ids = tampered
    path = tmp_path / "heads.json"
    with session_factory(engine)() as s:
        chain.write_heads(s, path, NOW)
    raw(engine, "UPDATE ledger_entry SET quantity = 1000, effect = -1000 WHERE entry_id = :e",
        e=ids["H1"][2])
    assert not verify(engine).ok
    _rehash(engine, "H1")
    assert verify(engine).ok  # nothing inside the database can tell any more
    b = only_break(verify(engine, against=chain.read_heads(path)))
    assert (b.facility_code, b.position) == ("H1", 6)


@pytest.mark.parametrize("content", ["not json at all", "{}", '{"heads": [{"length": 3}]}',
                                     '{"heads": [{"facility_code": "H1", "length": "x", "hash": "0"}]}'])
def test_read_heads_refuses_garbage_naming_the_file(tmp_path, content):
    path = tmp_path / "garbage.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        chain.read_heads(path)
    assert str(path) in str(err.value)


def test_read_heads_missing_file_names_it(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ValueError) as err:
        chain.read_heads(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("sql", [
    "UPDATE ledger_entry SET quantity = quantity + 1000 WHERE entry_id = :e",
    "DELETE FROM ledger_entry WHERE entry_id = :e",
    "TRUNCATE ledger_entry CASCADE",
])
def test_postgres_trigger_refuses_rewrite(pg_engine, sql):
    with session_factory(pg_engine)() as s:
        ids = populate(s)
    with pytest.raises(DBAPIError) as err:
        raw(pg_engine, sql, e=ids["H1"][0])
    assert "append-only" in str(err.value)
    report = verify(pg_engine)
    assert report.ok and report.entries == 13


def test_postgres_tamper_without_trigger_is_still_caught(pg_engine):
    """A superuser can disable the trigger; the chain still names the altered entry."""
    with session_factory(pg_engine)() as s:
        ids = populate(s)
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_no_update_delete"))
        conn.execute(text("UPDATE ledger_entry SET recorded_by = 'someone-else' WHERE entry_id = :e"),
                     {"e": ids["WH-C"][2]})
        conn.execute(text("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_no_update_delete"))
    b = only_break(verify(pg_engine))
    assert (b.facility_code, b.position, b.entry_id) == ("WH-C", 3, ids["WH-C"][2])



@pytest.fixture(params=["this process", "worker processes"])
def chunked(request, monkeypatch):
    """SQLite's storage-order read, cut into chunks of two entries, by this process or by worker
    processes."""
    monkeypatch.setattr(chain_read, "CHUNK", 2)
    monkeypatch.setattr(chain_read, "PARALLEL_FROM", 1 if request.param == "worker processes" else 10**9)


def test_chunked_read_verifies_clean_ledger_and_heads(tampered, chunked, tmp_path):
    engine, ids = tampered
    assert_sound_with_heads(engine, tmp_path, facilities=3, entries=13)


@pytest.mark.parametrize("k", [1, 4, 6])
def test_chunked_read_names_altered_entry(tampered, chunked, k):
    engine, ids = tampered
    raw(engine, "UPDATE ledger_entry SET reason = 'x' WHERE entry_id = :e", e=ids["H1"][k - 1])
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("H1", k, ids["H1"][k - 1])


def test_sound_chain_stored_out_of_order_still_verifies(tampered, chunked):
    """Storage order is only a fast first reading: a facility met out of chain order is walked
    again in chain order, so a sound chain stored in another order is not reported broken."""
    engine, ids = tampered
    first, second = ids["H1"][0], ids["H1"][1]
    raw(engine, "UPDATE ledger_entry SET id = -id WHERE entry_id = :e", e=second)
    report = verify(engine)
    assert report.ok, [str(b) for b in report.breaks]
    assert report.entries == 13
    raw(engine, "UPDATE ledger_entry SET quantity = quantity + 1 WHERE entry_id = :e", e=first)
    b = only_break(verify(engine))
    assert (b.facility_code, b.position, b.entry_id) == ("H1", 1, first)


# --- pack serials (GS1 AI 21): in the chain only when present -----------------------------------

def test_entry_without_serial_encodes_as_before():
    """Chains written before serials existed still verify: no serial adds nothing to the encoding."""
    values = ("H1", 1, "e1", "dispense", "MOR10", "L1", date(2028, 1, 31), 10000, -10000, None, 1, 2,
              "u1", "LY1", None, None, None, None, None)
    assert chain.encode((*values, None)) == chain.encode(values) == chain.SEP.join(
        ["1", "H1", "1", "e1", "dispense", "MOR10", "L1", "2028-01-31", "10000", "-10000", "", "1", "2", "u1",
         "LY1", "", "", "", "", ""]).encode()
    assert chain.encode((*values, "SN42")) == chain.encode(values) + b"\x1fSN42"
    assert chain.link(chain.GENESIS, (*values, None)) == chain.link(chain.GENESIS, values)
    assert chain.link(chain.GENESIS, (*values, "SN42")) != chain.link(chain.GENESIS, values)


def populate_serials(session) -> dict[str, list[str]]:
    ids = populate(session)
    at = T0 + timedelta(days=10)
    post(session, [
        entry("dispense", 1, facility="H1", lot="L1", serial_number="SN-0001", at=at, entry_id="S1"),
        entry("dispense", 1, facility="H1", lot="L1", at=at + timedelta(minutes=1), entry_id="S2"),
        entry("dispense", 1, facility="H1", lot="L1", serial_number="(A)+b/9_?", at=at + timedelta(minutes=2),
              entry_id="S3"),
    ])
    session.commit()
    ids["H1"] += ["S1", "S2", "S3"]
    return ids


def test_sql_and_python_encodings_agree_with_and_without_serial(session):
    """verify builds each entry's canonical text in SQL; post builds it in Python: byte for byte
    the same, serial or not, on SQLite and PostgreSQL."""
    populate_serials(session)
    dialect = session.get_bind().dialect.name
    texts = {row[2]: row[3] for row in chain._rows(session)}
    assert len(texts) == 16
    for e in session.scalars(select(LedgerEntry)):
        lot = session.get(Lot, e.lot_id)
        card = session.get(Patient, e.patient_id).health_card_id if e.patient_id else None
        code = session.get(Facility, e.facility_id).code
        values = hash_values(e, code, session.get(Item, e.item_id).code, lot, card)
        assert (chain.VERSION + chain.SEP + texts[e.entry_id]).encode() == chain.encode(values), (dialect, e.entry_id)
    assert texts["S1"].endswith("\x1fSN-0001") and texts["S3"].endswith("\x1f(A)+b/9_?")
    assert texts["S2"].count("\x1f") == 18 and texts["S1"].count("\x1f") == 19  # no serial, no field
    assert chain.verify(session).ok


def test_altered_or_added_serial_caught(sqlite_engine):
    with session_factory(sqlite_engine)() as s:
        ids = populate_serials(s)
    drop_triggers(sqlite_engine)
    assert verify(sqlite_engine).ok
    raw(sqlite_engine, "UPDATE ledger_entry SET serial_number = 'SN-0002' WHERE entry_id = 'S1'")
    b = only_break(verify(sqlite_engine))
    assert (b.facility_code, b.position, b.entry_id) == ("H1", ids["H1"].index("S1") + 1, "S1")
    raw(sqlite_engine, "UPDATE ledger_entry SET serial_number = 'SN-0001' WHERE entry_id = 'S1'")
    assert verify(sqlite_engine).ok
    raw(sqlite_engine, "UPDATE ledger_entry SET serial_number = 'SN-0001' WHERE entry_id = 'S2'")
    b = only_break(verify(sqlite_engine))
    assert b.entry_id == "S2"


def test_serial_removed_caught(sqlite_engine):
    with session_factory(sqlite_engine)() as s:
        populate_serials(s)
    drop_triggers(sqlite_engine)
    raw(sqlite_engine, "UPDATE ledger_entry SET serial_number = NULL WHERE entry_id = 'S3'")
    assert only_break(verify(sqlite_engine)).entry_id == "S3"


# --- worker processes: a large file database is read by two processes, range by range ----------

@pytest.fixture
def workers(monkeypatch):
    """The read by two worker processes from the first entry on, in ranges of 50 entries: small
    enough that every facility's chain crosses many seams between ranges."""
    monkeypatch.setattr(chain_read, "PARALLEL_FROM", 1)
    monkeypatch.setattr(chain_read, "CHUNK", 50)
    monkeypatch.setattr(chain_read, "WORKERS", 2)


def populate_many(session, n: int = 600) -> None:
    """``populate`` and then ``n`` more entries spread over the three facilities in an uneven
    rhythm, with and without patients and serials, so that seams fall everywhere in their chains."""
    populate(session)
    rhythm = ["H1", "H1", "WH-C", "HC2", "H1", "WH-C", "H1"]
    post(session, [entry("receipt", 10_000, facility=f, lot="M1", at=T0 + timedelta(days=5))
                   for f in ("H1", "HC2", "WH-C")])
    at = T0 + timedelta(days=6)
    batch = []
    for k in range(n):
        extra = {"serial_number": f"SN{k}"} if k % 11 == 0 else {}
        if k % 3:
            extra["health_card_id"] = "LY0000000001"
        batch.append(entry("dispense" if k % 3 else "loss", 1, facility=rhythm[k % len(rhythm)], lot="M1",
                           at=at + timedelta(minutes=k, microseconds=k), **extra))
    post(session, batch)
    session.commit()


@pytest.fixture(scope="module")
def many_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("many")
    engine = make_sqlite(path)
    with session_factory(engine)() as s:
        populate_many(s)
    engine.dispose()  # the last connection to close folds the WAL into the file
    return path / "dawa.sqlite"


@pytest.fixture
def many(many_file, tmp_path):
    """A copy of a ledger of 616 entries whose append-only triggers an attacker has dropped."""
    shutil.copy(many_file, tmp_path / "dawa.sqlite")
    engine = make_engine(f"sqlite:///{tmp_path / 'dawa.sqlite'}")
    drop_triggers(engine)
    yield engine
    engine.dispose()


def by_id(engine, row_id: int) -> tuple[str, int, str]:
    """(facility code, position, entry_id) of the entry stored with this id."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT f.code, e.chain_seq, e.entry_id FROM ledger_entry e JOIN facility f ON f.id = e.facility_id "
            "WHERE e.id = :i"), {"i": row_id}).one())


def worker_pids() -> set[int]:
    """Live chain verification workers started by this process."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if (int(fields.get("PPid", 0)) == os.getpid() and b"chain_worker.py" in cmdline
                and not fields.get("State", "").startswith("Z")):
            found.add(int(status.parent.name))
    return found


def test_workers_verify_as_this_process_does(many, workers, monkeypatch, tmp_path):
    assert_sound_with_heads(many, tmp_path, facilities=3, entries=616)
    monkeypatch.setattr(chain_read, "PARALLEL_FROM", 10**9)
    alone = verify(many)
    assert (alone.ok, alone.facilities, alone.entries) == (True, 3, 616)
    assert worker_pids() == set()


@pytest.mark.parametrize("row_id", [1, 50, 51, 52, 100, 101, 616], ids=lambda i: f"id{i}")
def test_workers_name_altered_entry_at_and_near_seams(many, workers, row_id):
    """Ranges are 1-50, 51-100, ...: an entry whose predecessor in its chain lies in the range
    before is checked by this process, the others by the workers; all are named exactly."""
    code, position, entry_id = by_id(many, row_id)
    raw(many, "UPDATE ledger_entry SET reason = 'x' WHERE id = :i", i=row_id)
    b = only_break(verify(many))
    assert (b.facility_code, b.position, b.entry_id) == (code, position, entry_id)
    assert "altered" in b.problem


@pytest.mark.parametrize("row_id", [50, 51, 300], ids=lambda i: f"id{i}")
def test_workers_name_entry_after_a_deleted_one(many, workers, row_id):
    code, position, _entry_id = by_id(many, row_id)
    with many.connect() as conn:
        after = conn.scalar(text(
            "SELECT entry_id FROM ledger_entry WHERE chain_seq = :n AND facility_id = "
            "(SELECT id FROM facility WHERE code = :c)"), {"n": position + 1, "c": code})
    raw(many, "DELETE FROM ledger_entry WHERE id = :i", i=row_id)
    b = only_break(verify(many))
    assert (b.facility_code, b.position, b.entry_id) == (code, position, after)
    assert "1 entry before it deleted" in b.problem


def test_workers_catch_forged_tail_and_cut_tail(many, workers, tmp_path):
    with session_factory(many, read_only=True)() as s:
        chain.write_heads(s, tmp_path / "heads.json", NOW)
    _forge_tail(many, "WH-C", "FORGED-3", correct_hash=True)
    b = only_break(verify(many))
    assert (b.facility_code, b.entry_id) == ("WH-C", "FORGED-3")
    assert "inserted out of band" in b.problem
    raw(many, "DELETE FROM ledger_entry WHERE entry_id = 'FORGED-3'")
    with many.connect() as conn:
        length, last = conn.execute(text(
            "SELECT max(chain_seq), max(id) FROM ledger_entry WHERE facility_id = "
            "(SELECT id FROM facility WHERE code = 'HC2')")).one()
    # HC2's last entry is cut off and its head wound back to match: only the exported head knows.
    raw(many, "DELETE FROM ledger_entry WHERE id = :i", i=last)
    raw(many, "UPDATE chain_head SET length = :n, head_hash = (SELECT chain_hash FROM ledger_entry "
              "WHERE chain_seq = :n AND facility_id = chain_head.facility_id) "
              "WHERE facility_id = (SELECT id FROM facility WHERE code = 'HC2')", n=length - 1)
    assert verify(many).ok
    b = only_break(verify(many, against=chain.read_heads(tmp_path / "heads.json")))
    assert (b.facility_code, b.position) == ("HC2", length)
    assert "cut off or rewritten" in b.problem


def test_workers_read_nothing_past_this_sessions_snapshot(many, workers):
    """Entries appended after verify began are not read by the workers either, which open their
    connections later: the chains end where this session saw them end."""
    with session_factory(many, read_only=True)() as s:
        s.execute(text("SELECT 1 FROM chain_head")).all()  # the read transaction, and so the snapshot, begins
        with session_factory(many)() as w:
            post(w, [entry("receipt", 1, facility=f, lot="M1", at=T0 + timedelta(days=30))
                     for f in ("H1", "HC2", "WH-C", "H1")])
            w.commit()
        report = chain.verify(s)
    assert report.ok, [str(b) for b in report.breaks]
    assert report.entries == 616
    assert verify(many).entries == 620


@pytest.mark.parametrize("mode", ["this process", "worker processes"])
def test_database_error_raised_as_is_and_no_worker_left(many, monkeypatch, mode):
    monkeypatch.setattr(chain_read, "CHUNK", 50)
    monkeypatch.setattr(chain_read, "PARALLEL_FROM", 1 if mode == "worker processes" else 10**9)
    raw(many, "ALTER TABLE lot RENAME COLUMN lot_number TO lot_no")
    with pytest.raises(sqlite3.OperationalError) as err:
        verify(many)
    assert "lot_number" in str(err.value)
    assert worker_pids() == set()


def test_workers_stopped_when_the_reader_stops_early(many, workers, monkeypatch):
    # Ranges of one entry: the first range's summary comes back long before the last is read
    # (summaries that come back early, out of turn, are kept until their turn).
    monkeypatch.setattr(chain_read, "CHUNK", 1)
    with session_factory(many, read_only=True)() as s:
        summaries = chain_read._storage_order_summaries(s, {})
        assert len(next(summaries)) == 1  # a summary per facility in the range
        assert worker_pids()
        summaries.close()
    assert worker_pids() == set()


INTERRUPTED = """
import sys
from stock import chain, chain_read
from stock.db import make_engine, session_factory
chain_read.PARALLEL_FROM, chain_read.CHUNK = 1, 1
engine = make_engine(sys.argv[1])
print("started", flush=True)
while True:
    with session_factory(engine, read_only=True)() as s:
        assert chain.verify(s).ok
"""


@pytest.mark.parametrize("to", ["process", "process group"])
def test_interrupted_verify_leaves_no_worker(many, to):
    """SIGINT stops verify at once with KeyboardInterrupt, workers included: sent to the process
    alone, or to its whole process group as Ctrl-C at a terminal does."""
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, many.url.render_as_string()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2],
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"started\n"
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    if (f"PPid:\t{proc.pid}\n" in status.read_text()
                            and b"chain_worker.py" in (status.parent / "cmdline").read_bytes()):
                        seen.add(int(status.parent.name))
                except OSError:
                    pass
        assert len(seen) >= 2, "no workers seen"
        if to == "process":
            proc.send_signal(signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _out, errors = proc.communicate(timeout=20)
        assert proc.returncode != 0 and b"KeyboardInterrupt" in errors, errors.decode()
        assert b"RuntimeError" not in errors, errors.decode()  # not a worker gone first
        for pid in seen:
            state = Path(f"/proc/{pid}/status")
            assert not state.exists() or "State:\tZ" in state.read_text(), f"worker {pid} still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
