"""What the database itself holds to, on SQLite and PostgreSQL: the audit trail is append-only,
changes to the master data detectors depend on are versioned by a trigger whoever makes them, and
(PostgreSQL) the application's own role works yet cannot rewrite the ledger or the audit trail."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

import migrations
from stock.db import make_engine, session_factory
from stock.ledger import post
from stock.masterdata import add_patient, add_prescription
from tests.conftest import PgSchema, _pg_or_skip
from tests.stock.builders import build_world, entry
from tests.web.conftest import PASSWORD, Served, add_users, login, make_settings
from web import audit
from web.models import AuditRecord, MasterDataChange


def _refused(engine, sql: str, **params) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    except DBAPIError:
        return True
    return False


def test_the_audit_trail_is_append_only(engine):
    Session = session_factory(engine)
    with Session() as s:
        audit.record(s, None, "login", "user", "someone")
        s.commit()
    assert _refused(engine, "UPDATE audit_record SET object_id = 'someone-else'")
    assert _refused(engine, "DELETE FROM audit_record")
    if engine.dialect.name == "postgresql":
        assert _refused(engine, "TRUNCATE audit_record")
    with Session() as s:
        assert s.scalars(select(AuditRecord.object_id)).all() == ["someone"]


def test_master_data_changes_are_versioned_whoever_makes_them(engine):
    Session = session_factory(engine)
    with Session() as s:
        build_world(s)
        add_patient(s, "LY0000000042")
        s.flush()
        add_prescription(s, "RX-42", "LY0000000042", "H1", "MOR10", Decimal(20), 10, date(2026, 3, 1))
        s.commit()
    with engine.begin() as conn:  # behind the application's back
        conn.execute(text("UPDATE item SET controlled = NOT controlled, max_dispense_quantity = 999 WHERE code = 'MOR10'"))
        conn.execute(text("UPDATE item SET name = 'renamed' WHERE code = 'MOR10'"))  # not watched
        conn.execute(text("UPDATE patient SET deceased_on = '2026-01-01' WHERE health_card_id = 'LY0000000042'"))
        conn.execute(text("UPDATE prescription SET quantity = 200 WHERE code = 'RX-42'"))
        conn.execute(text("UPDATE prescription SET quantity = 200 WHERE code = 'RX-42'"))  # no change: no row
    with Session() as s:
        rows = s.scalars(select(MasterDataChange).order_by(MasterDataChange.id)).all()
        pid = s.scalar(text("SELECT id FROM patient WHERE health_card_id = 'LY0000000042'"))
    got = {(r.object_type, r.object_id, r.field) for r in rows}
    assert got == {("item", "MOR10", "controlled"), ("item", "MOR10", "max_dispense_quantity"),
                   ("patient", str(pid), "deceased_on"), ("prescription", "RX-42", "quantity")}
    rx = next(r for r in rows if r.object_type == "prescription")
    assert (rx.old, rx.new) == ("20000", "200") and rx.by and rx.at  # as stored: thousandths
    assert all("LY0000000042" not in f"{r.object_id} {r.old} {r.new}" for r in rows)
    assert _refused(engine, "DELETE FROM master_data_change")


@pytest.fixture
def roles():
    """A migrated schema handed to an owner and an application role of the test's own."""
    url = _pg_or_skip()
    schema = PgSchema(url)
    migrations.upgrade(schema.engine)
    Session = session_factory(schema.engine)
    from tests.web.conftest import seed_world

    seed_world(Session)
    owner, app = f"{schema.name}_owner", f"{schema.name}_app"
    from web.db_roles import setup_roles

    counts = setup_roles(schema.engine, owner=owner, app=app, app_password=uuid.uuid4().hex)
    assert counts["append_only"] == 4
    app_url = make_engine(url).url.set(username=app)
    app_engine = make_engine(app_url.render_as_string(hide_password=False),
                             connect_args={"options": f"-csearch_path={schema.name}"})
    try:
        yield schema, app_engine
    finally:
        app_engine.dispose()
        schema.drop()
        admin = make_engine(url)
        with admin.begin() as conn:
            for role in (app, owner):
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


@pytest.mark.postgres
def test_the_app_works_under_its_role_and_cannot_rewrite_history(roles):
    schema, app_engine = roles
    with app_engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one().endswith("_app")
    # The app itself, served under the role: a login, a batch posted, an audit record, a page.
    served = Served(__import__("web.app", fromlist=["create_app"]).create_app(app_engine, make_settings()))
    try:
        c = httpx.Client(base_url=served.base_url)
        assert login(c, "pharm_h1", PASSWORD).status_code == 303
        from tests.web.conftest import page_csrf

        r = c.post("/api/v1/entries", headers={"X-CSRF-Token": page_csrf(c)}, json={"entries": [{
            "entry_id": "role-1", "occurred_at": "2026-03-05T10:00:00+02:00", "facility_code": "H1",
            "kind": "dispense", "item_code": "MOR10", "lot_number": "L1", "quantity": 1,
            "health_card_id": "LY0000000001"}]})
        assert r.status_code == 201, r.text
        assert c.get("/stock/H1").status_code in (200, 403)
    finally:
        served.stop()
    with session_factory(app_engine)() as s:
        post(s, [entry("receipt", 5, facility="H1", item="MOR10", lot="L1")])
        audit.record(s, None, "login", "user", "x")
        s.commit()
    forbidden = [
        "UPDATE ledger_entry SET quantity = quantity + 1",
        "DELETE FROM ledger_entry",
        "TRUNCATE ledger_entry CASCADE",
        "ALTER TABLE ledger_entry DISABLE TRIGGER ALL",
        "ALTER TABLE ledger_entry DISABLE TRIGGER USER",
        "UPDATE audit_record SET object_id = 'x'",
        "DELETE FROM audit_record",
        "TRUNCATE audit_record",
        "ALTER TABLE audit_record DISABLE TRIGGER USER",
        "DELETE FROM master_data_change",
        "UPDATE audit_seal SET head_hash = 'x'",
        "DROP TABLE balance CASCADE",
        "CREATE TABLE sneaky (id int)",
        "UPDATE alembic_version SET version_num = 'x'",
        "CREATE OR REPLACE FUNCTION ledger_entry_append_only() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ "
        "LANGUAGE plpgsql",
    ]
    allowed = [s for s in forbidden if not _refused(app_engine, s)]
    assert allowed == []
