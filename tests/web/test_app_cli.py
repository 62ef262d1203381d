"""``dawa users ...`` and ``dawa serve``, run for real against a SQLite file of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from stock.db import make_engine
from stock.settings import get_settings
from tests.stock.builders import build_world
from tests.web.conftest import Served, make_settings
from tests.web.test_cli import dawa, table_rows  # noqa: F401  (the fixture, reused)
from web import auth
from web.cli.serve import PASSWORD_ENV
from web.models import ApiToken, AuditRecord, WebSession

GOOD = "a-long-enough-password"


@pytest.fixture
def users(dawa, monkeypatch):  # noqa: F811
    """An initialised database with the small world, and cheap password hashing for the test."""
    for name, value in (("DAWA_WEB__ARGON2_TIME_COST", "1"), ("DAWA_WEB__ARGON2_MEMORY_KIB", "1024"),
                        ("DAWA_WEB__ARGON2_PARALLELISM", "1")):
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert dawa("init", "--env-file", ".env").exit_code == 0
    with dawa.session() as s:
        build_world(s)
        s.commit()
    monkeypatch.setenv(PASSWORD_ENV, GOOD)
    return dawa


def test_create_list_and_the_stored_hash(users):
    r = users("users", "create", "amina", "--role", "pharmacist", "--facility", "H1", "--display-name", "Amina")
    assert r.exit_code == 0, r.output
    assert "created amina: pharmacist, scope H1" in r.text
    assert users("users", "create", "omar", "--role", "auditor", "--region", "Tripoli").exit_code == 0
    assert users("users", "create", "root", "--role", "admin").exit_code == 0
    rows = table_rows(users("users", "list").output)
    assert rows == [("amina", "Amina", "pharmacist", "facility H1", "yes", ""),
                    ("omar", "", "auditor", "region Tripoli", "yes", ""),
                    ("root", "", "admin", "national", "yes", "")]
    with users.session() as s:
        user = auth.user_by_username(s, "amina")
        assert user.password_hash.startswith("$argon2id$") and GOOD not in user.password_hash
        assert auth.check_password(user, GOOD, get_settings().web)
        assert not auth.check_password(user, GOOD + "x", get_settings().web)
        created = s.scalars(select(AuditRecord).where(AuditRecord.action == "user_created")).all()
        assert [a.object_id for a in created] == ["amina", "omar", "root"]


@pytest.mark.parametrize("args, message", [
    (("x", "--role", "pharmacist"), "a pharmacist works at one facility: give --facility"),
    (("x", "--role", "nurse"), "role 'nurse' is not one of pharmacist, facility_manager, auditor, admin"),
    (("x", "--role", "auditor", "--facility", "NOPE"), "unknown facility 'NOPE'"),
    (("x", "--role", "auditor", "--region", "Atlantis"), "no facility is in region 'Atlantis'"),
    (("x", "--role", "auditor", "--facility", "H1", "--region", "Tripoli"), "not both"),
    (("bad name", "--role", "admin"), "a user name is 1-64 letters"),
    (("x", "--role", "admin", "--language", "de"), "language must be one of en, fr, ar"),
])
def test_create_refuses_what_makes_no_sense(users, args, message):
    r = users("users", "create", *args)
    assert r.exit_code == 1
    assert message in r.err
    with users.session() as s:
        assert auth.user_by_username(s, args[0]) is None


@pytest.mark.parametrize("password, message", [
    ("short", "at least 12 characters"),
    ("a-long-password-but-x", None),  # fine: shown to hold the case below to the policy alone
    ("Password1234!", "common or easily guessed"),  # a breached password with the usual decorations
    ("qwertyuiop12", "common or easily guessed"),  # a keyboard walk
    ("my-name-is-amina-ok", "must not contain the user name"),
    ("x" * 129, "at most 128 characters"),
])
def test_password_policy(users, monkeypatch, password, message):
    monkeypatch.setenv(PASSWORD_ENV, password)
    r = users("users", "create", "amina", "--role", "admin")
    if message is None:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 1 and message in r.err
        monkeypatch.setenv(PASSWORD_ENV, GOOD)
        assert users("users", "create", "amina", "--role", "admin").exit_code == 0
        monkeypatch.setenv(PASSWORD_ENV, password)
        assert users("users", "password", "amina").exit_code == 1


def test_create_refuses_a_short_password_and_a_taken_name(users, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "short")
    r = users("users", "create", "x", "--role", "admin")
    assert r.exit_code == 1 and "at least 12 characters" in r.err
    monkeypatch.setenv(PASSWORD_ENV, GOOD)
    assert users("users", "create", "x", "--role", "admin").exit_code == 0
    r = users("users", "create", "x", "--role", "admin")
    assert r.exit_code == 1 and "user 'x' already exists" in r.err


def test_password_is_prompted_for_when_not_in_the_environment(users, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV)
    argv = ["users", "create", "x", "--role", "admin", "--db", users.url]
    from web.cli.main import app

    r = users.runner.invoke(app, argv, input=f"{GOOD}\n{GOOD}\n")
    assert r.exit_code == 0, r.output
    assert GOOD not in r.output  # hidden input
    with users.session() as s:
        assert auth.check_password(auth.user_by_username(s, "x"), GOOD, get_settings().web)


def test_token_disable_and_password_against_the_running_app(users, monkeypatch):
    assert users("users", "create", "amina", "--role", "pharmacist", "--facility", "H1").exit_code == 0
    r = users("users", "token", "amina", "--name", "stock sync")
    assert r.exit_code == 0
    token = r.stdout.strip()
    assert token.startswith(auth.API_TOKEN_PREFIX) and "shown once" in r.err
    assert users("users", "token", "nobody", "--name", "n").exit_code == 1
    with users.session() as s:
        assert s.scalars(select(ApiToken.name)).all() == ["stock sync"]

    engine = make_engine(users.url)
    served = Served(__import__("web.app", fromlist=["create_app"]).create_app(engine, make_settings()))
    try:
        api = httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {token}"})
        assert api.get("/api/v1/me").json()["username"] == "amina"
        browser = httpx.Client(base_url=served.base_url)
        from tests.web.conftest import login

        assert login(browser, "amina", GOOD).status_code == 303
        r = users("users", "disable", "amina")
        assert r.exit_code == 0 and "1 login(s) ended" in r.text
        assert api.get("/api/v1/me").status_code == 401
        assert browser.get("/api/v1/me").status_code == 401
        assert login(httpx.Client(base_url=served.base_url), "amina", GOOD).status_code == 401
        assert users("users", "token", "amina", "--name", "again").exit_code == 1

        assert users("users", "enable", "amina").exit_code == 0
        assert api.get("/api/v1/me").status_code == 401  # revoked when disabled: enabling revives none
        assert login(httpx.Client(base_url=served.base_url), "amina", GOOD).status_code == 303
        r = users("users", "token", "amina", "--name", "after")
        api = httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {r.stdout.strip()}"})
        assert api.get("/api/v1/me").status_code == 200
        monkeypatch.setenv(PASSWORD_ENV, "another-long-password")
        r = users("users", "password", "amina")
        assert r.exit_code == 0 and "1 token(s) revoked" in r.text
        assert api.get("/api/v1/me").status_code == 401  # a new password revokes the tokens
        assert login(httpx.Client(base_url=served.base_url), "amina", GOOD).status_code == 401
        assert login(httpx.Client(base_url=served.base_url), "amina", "another-long-password").status_code == 303
    finally:
        served.stop()
        engine.dispose()
    with users.session() as s:
        actions = [a for a in s.scalars(select(AuditRecord.action).order_by(AuditRecord.id))]
        assert actions[-1] == "login" and "user_disabled" in actions and "user_password_set" in actions
        assert "api_token_created" in actions
        assert s.scalar(select(WebSession.id)) is not None


def test_tokens_expire_and_are_revoked_one_by_one(users):
    assert users("users", "create", "amina", "--role", "pharmacist", "--facility", "H1").exit_code == 0
    sync = users("users", "token", "amina", "--name", "sync", "--days", "30").stdout.strip()
    other = users("users", "token", "amina", "--name", "other").stdout.strip()
    assert users("users", "token", "amina", "--name", "x", "--days", "400").exit_code == 1
    with users.session() as s:
        rows = {t.name: t for t in s.scalars(select(ApiToken))}
        assert 29.9 < (rows["sync"].expires_at - rows["sync"].created_at).days + 0.5 < 30.6
        assert (rows["other"].expires_at - rows["other"].created_at).days == 90
        sync_id = rows["sync"].id
    listed = table_rows(users("users", "tokens", "amina").output)
    assert [r[1] for r in listed] == ["sync", "other"]
    engine = make_engine(users.url)
    served = Served(__import__("web.app", fromlist=["create_app"]).create_app(engine, make_settings()))
    try:
        def me(token):
            return httpx.get(served.base_url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code

        assert me(sync) == 200 and me(other) == 200
        r = users("users", "revoke-token", "amina", str(sync_id))
        assert r.exit_code == 0
        assert me(sync) == 401 and me(other) == 200  # only that token
        assert users("users", "revoke-token", "amina", str(sync_id)).exit_code == 1  # already revoked
        with users.session() as s:
            s.execute(update(ApiToken).where(ApiToken.name == "other")
                      .values(expires_at=auth.now() - timedelta(seconds=1)))
            s.commit()
        auth.credentials_changed()  # another process's change: the cache would see it within seconds
        assert me(other) == 401  # expired
    finally:
        served.stop()
        engine.dispose()
    with users.session() as s:
        assert "api_token_revoked" in s.scalars(select(AuditRecord.action)).all()


def test_serve_answers_on_loopback(users, tmp_path):
    from tests.web.conftest import free_socket

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAWA_")}
    dawa_script = os.path.join(os.path.dirname(sys.executable), "dawa")
    proc = subprocess.Popen([dawa_script, "serve", "--db", users.url, "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dawa serve did not answer: {proc.stdout.read().decode()}")
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["database"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/").headers["location"] == "/login?next=%2F"
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_refuses_to_start_without_a_secret_key(users, tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("")
    monkeypatch.delenv("DAWA_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    r = users("serve", "--port", "1")
    assert r.exit_code == 1 and "DAWA_SECRET_KEY is not set" in r.err


def test_demo_users_one_per_role_with_new_passwords_each_run(engine):
    from stock.db import session_factory
    from tests.web.conftest import seed_world
    from web.cli.serve import demo_users

    Session = session_factory(engine)
    seed_world(Session)
    web = make_settings().web
    with Session() as s:
        first = demo_users(s, web)
        s.commit()
    assert [(u, r, scope) for u, r, scope, _ in first] == [
        ("demo-pharmacist", "pharmacist", "facility B1"), ("demo-manager", "facility_manager", "facility B1"),
        ("demo-auditor", "auditor", "national"), ("demo-admin", "admin", "national")]
    with Session() as s:
        second = demo_users(s, web)
        s.commit()
        for (username, _, _, old), (_, _, _, new) in zip(first, second):
            user = auth.user_by_username(s, username)
            assert old != new and len(new) >= 10
            assert auth.check_password(user, new, web) and not auth.check_password(user, old, web)
