"""Flag reasons kept as messages and read in the reader's language: on a generated ledger scanned
for real, on SQLite and PostgreSQL, through the pages, the API and the CLI table."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from sqlalchemy import select, update

from anomaly import scan
from anomaly.export import query
from anomaly.models import Flag, FlagHit
from sample_data.generator import generate
from stock.db import session_factory
from stock.importer import import_dataset
from stock.messages import load
from stock.models import User
from tests.web.bidi_text import FSI, PDI, english_left
from tests.web.conftest import PASSWORD, LiveServer, Served, make_settings
from web.cli_tables import flag_table
from web.messages import reason_text, render

AUDITOR = "aud_all"


@pytest.fixture
def server(engine, tmp_path):
    """A generated ledger (its scenarios seeded), imported, scanned, and served."""
    from web.app import create_app
    from web.cli_web import create_user

    generate(tmp_path / "data", seed=1, scale=0.1)
    Session = session_factory(engine)
    settings = make_settings()
    with Session() as s:
        import_dataset(s, tmp_path / "data")
        create_user(s, AUDITOR, "auditor", PASSWORD, web=settings.web)
        s.commit()
        scan.run(s)
        s.commit()
    served = Served(create_app(engine, settings))
    live = LiveServer(served.base_url, served, engine, Session)
    try:
        yield live
    finally:
        for c in live.clients:
            c.close()
        served.stop()


def _speaks(server, lang: str) -> None:
    with server.Session() as s:
        s.execute(update(User).where(User.username == AUDITOR).values(language=lang))
        s.commit()


def test_every_reason_of_a_scanned_ledger_reads_in_french_and_arabic(server):
    with server.Session() as s:
        hits = list(s.scalars(select(FlagHit)))
        flags = list(s.scalars(select(Flag)))
    detectors = {h.detector for h in hits}
    assert len(detectors) >= 10, detectors  # the generated scenarios wake most detectors
    assert all(h.messages for h in hits) and all(f.messages for f in flags)
    for h in hits:
        messages = load(h.messages)
        assert render(messages, "en") == h.reason  # the text kept is the English rendering
        for lang in ("fr", "ar"):
            missing: set = set()
            text = render(messages, lang, missing=missing)
            assert not missing, (h.detector, lang, missing)
            assert text != h.reason
            assert not english_left(text, lang), (h.detector, lang, english_left(text, lang), text)
            # Codes, ids and names are isolated in text, and in <bdi> in HTML.
            assert FSI in text and PDI in text and text.count(FSI) == text.count(PDI)
            html = render(messages, lang, html=True)
            assert "<bdi>" in html and FSI not in html


def test_a_negative_number_and_a_code_keep_their_order_in_arabic():
    from stock.messages import code, msg, num

    m = msg("%(qty)s of %(item)s", qty=num(-30), item=code("u-BEN-HC01-02"))
    assert render(m, "ar") == f"{FSI}-30{PDI} من {FSI}u-BEN-HC01-02{PDI}"
    assert render(m, "ar", html=True) == "<bdi>-30</bdi> من <bdi>u-BEN-HC01-02</bdi>"
    assert render(m, "en") == "-30 of u-BEN-HC01-02"


def test_pages_api_and_cli_give_the_reason_in_the_readers_language_of_the_moment(server):
    with server.Session() as s:
        flag = s.scalars(select(Flag).where(Flag.subject != "patient").order_by(Flag.rank_score.desc())).first()
        hit = s.scalars(select(FlagHit).where(FlagHit.flag_id == flag.flag_id)).first()
        rows = query(s, limit=20)
    row = next(r for r in rows if r.subject != "patient")  # patients' cards are shown by pseudonym
    client = server.login(AUDITOR)

    _speaks(server, "ar")
    page = client.get(f"/flags/{flag.flag_id}")
    assert page.status_code == 200 and 'dir="rtl"' in page.text
    assert str(reason_text(hit, "ar", html=True)) in page.text
    queue = client.get("/flags")
    assert reason_text(row, "ar")[:40] in queue.text

    # The same flag, read again after the auditor changed language: now in French.
    _speaks(server, "fr")
    page = client.get(f"/flags/{flag.flag_id}")
    assert str(reason_text(hit, "fr", html=True)) in page.text
    assert str(reason_text(hit, "ar", html=True)) not in page.text

    # The API keeps the English text and gives the messages for a client to render.
    r = client.get("/api/v1/flags", params={"limit": 1000})
    assert r.status_code == 200
    out = {f["flag_id"]: f for f in r.json()["flags"]}[flag.flag_id]
    assert out["reason"] == flag.reason
    assert [m["key"] for m in out["messages"]] == [m["key"] for m in flag.messages]
    assert render(load(out["messages"]), "en") == flag.reason
    case = client.get(f"/api/v1/flags/{flag.flag_id}").json()
    assert all(h["messages"] and "key" in h["messages"][0] and "params" in h["messages"][0] for h in case["hits"])

    # The CLI table renders in the language it is given.
    buf = io.StringIO()
    flag_table(Console(file=buf, width=200), [row], "flags", lang="ar")
    shown = " ".join(buf.getvalue().split())
    assert " ".join(reason_text(row, "ar").split())[:30] in shown and row.reason[:30] not in shown


def test_a_flag_kept_before_messages_shows_its_stored_text(server):
    with server.Session() as s:
        flag = s.scalars(select(Flag).where(Flag.subject != "patient")).first()
        s.execute(update(FlagHit).where(FlagHit.flag_id == flag.flag_id).values(messages=None, reason="Old words."))
        s.execute(update(Flag).where(Flag.flag_id == flag.flag_id).values(messages=None))
        s.commit()
        reason = flag.reason
    client = server.login(AUDITOR)
    _speaks(server, "fr")
    page = client.get(f"/flags/{flag.flag_id}")
    assert page.status_code == 200 and "Old words." in page.text
    out = {f["flag_id"]: f for f in client.get("/api/v1/flags", params={"limit": 1000}).json()["flags"]}
    assert out[flag.flag_id]["messages"] is None and out[flag.flag_id]["reason"] == reason
    assert json.dumps(out[flag.flag_id])  # still plain JSON
