"""Witnessed chain heads and the sealed audit trail: a signed heads file kept outside the database
catches a ledger edited and its chain recomputed (which nothing inside the database can tell any
more), a signature that does not match is refused, and the audit trail's chain catches an edited
record. Run through `dawa` on a SQLite file whose append-only triggers an attacker dropped."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from stock.db import make_engine, session_factory
from tests.stock.test_chain import NOW, _rehash, drop_triggers, populate, raw
from tests.web.test_cli import Dawa
from web import audit, audit_chain, witness


@pytest.fixture
def forger(tmp_path, monkeypatch):
    """A populated ledger with some audit records, a witness key pair and a signed heads file, then
    the append-only triggers dropped (the attacker holds the database file)."""
    from tests.web.test_cli import dawa as _dawa  # noqa: F401

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'dawa.sqlite'}"
    import migrations

    engine = make_engine(url)
    migrations.upgrade(engine)
    with session_factory(engine)() as s:
        ids = populate(s)
        for i in range(5):
            audit.record(s, None, "login", "user", f"u{i}")
        s.commit()
        audit_chain.seal(s, NOW + timedelta(days=3650))
        s.commit()
    key = tmp_path / "witness.pem"
    public = witness.generate_key(key)
    with session_factory(engine)() as s:
        signed = witness.write(witness.signed_heads(s, witness.load_private(key), NOW), tmp_path / "heads")
    with engine.begin() as conn:
        for table in ("audit_record", "audit_seal"):
            conn.execute(text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
    drop_triggers(engine)
    yield engine, ids, Dawa(tmp_path), signed, public
    engine.dispose()


def test_a_key_is_never_overwritten_and_the_private_half_is_private(tmp_path):
    key = tmp_path / "k.pem"
    witness.generate_key(key)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        witness.generate_key(key)


def test_signed_heads_catch_a_recomputed_chain(forger):
    engine, ids, dawa, signed, public = forger
    ok = dawa("ledger", "verify", "--against", str(signed), "--public-key", str(public))
    assert ok.exit_code == 0, ok.output
    raw(engine, "UPDATE ledger_entry SET quantity = 1000, effect = -1000 WHERE entry_id = :e", e=ids["H1"][2])
    _rehash(engine, "H1")
    assert dawa("ledger", "verify").exit_code == 0  # inside the database nothing tells any more
    r = dawa("ledger", "verify", "--against", str(signed), "--public-key", str(public))
    assert r.exit_code == 1 and "H1" in r.err


def test_a_heads_file_altered_or_unsigned_by_the_key_is_refused(forger, tmp_path):
    engine, ids, dawa, signed, public = forger
    data = json.loads(signed.read_text())
    data["heads"][0]["hash"] = "0" * 64  # an attacker's own heads, to match a rewritten ledger
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    r = dawa("ledger", "verify", "--against", str(forged), "--public-key", str(public))
    assert r.exit_code == 2 and "signature does not match" in r.err
    other = witness.generate_key(tmp_path / "other.pem")
    r = dawa("ledger", "verify", "--against", str(signed), "--public-key", str(other))
    assert r.exit_code == 2 and "signature does not match" in r.err
    r = dawa("ledger", "verify", "--against", str(signed))
    assert r.exit_code == 2 and "--public-key" in r.err


def test_the_audit_chain_catches_an_edited_record_and_a_resealed_trail(forger):
    engine, ids, dawa, signed, public = forger
    assert dawa("audit", "verify").exit_code == 0
    raw(engine, "UPDATE audit_record SET object_id = 'someone-else' WHERE object_id = 'u2'")
    r = dawa("audit", "verify")
    assert r.exit_code == 1 and "changed, removed or inserted" in r.err
    # Recomputing the seals as well is caught by the witnessed heads.
    with session_factory(engine)() as s:
        s.execute(text("DELETE FROM audit_seal"))
        s.commit()
        audit_chain.seal(s, NOW + timedelta(days=3650))
        s.commit()
    assert dawa("audit", "verify").exit_code == 0
    r = dawa("ledger", "verify", "--against", str(signed), "--public-key", str(public))
    assert r.exit_code == 1 and "audit trail" in r.err
