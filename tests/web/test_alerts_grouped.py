"""Alerts people read: one message per recipient and channel for each run, e-mailed to a real SMTP
server on loopback; a digest by default for auditors; a lot past its date told as expired."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from anomaly.models import Flag
from stock.ledger import post
from tests.web.alerts_world import (MARCH, NOW, Mailbox, day, deliveries, entry, notified, populate, prefer,
                                    settings, stocked_out, user)
from tests.web.test_alerts_scheduler import database_url
from web.alerts.jobs import scan_and_alert, stock_alerts, weekly_digest
from web.alerts.models import AlertPreference
from web.cli import app


@pytest.fixture
def world(session):
    populate(session)
    return session


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


def _suspicious(session, n: int = 4) -> None:
    """Morphine handed out at H1 without a prescription, ``n`` times: a flag each."""
    post(session, [entry("receipt", 1000, facility="H1", item="MOR10", lot="L1", at=MARCH)]
         + [entry("dispense", 10 + i, facility="H1", item="MOR10", lot="L1", at=day(date(2026, 3, 3 + i)),
                  entry_id=f"no-rx-{i}") for i in range(n)], now=day(date(2026, 3, 10)))
    session.commit()


def test_one_scan_sends_each_auditor_one_message_listing_every_new_flag(world, mailbox):
    _suspicious(world)
    prefer(world, "aud_tripoli", "email", "tripoli.audit@example.org", language="fr")
    s = settings(smtp_port=mailbox.port, smtp_from="alerts@dawa.test")
    result = scan_and_alert(world, s, NOW)
    flags = world.scalars(select(Flag).where(Flag.status == "open")).all()
    assert result.started == len(flags) >= 4, result.summary()

    assert [rcpts for _, rcpts, _ in mailbox.messages] == [["tripoli.audit@example.org"]]
    mail = mailbox.messages[0][2]
    assert mail["Subject"] == f"Dawa\u00a0: {len(flags)} nouvelles alertes"
    plain = mail.get_body(("plain",)).get_content()
    for flag in flags:
        assert f"/flags/{flag.flag_id}" in plain
    assert plain.count("- [") == len(flags) and "à \u2068H1\u2069\u00a0: " in plain
    # The national auditor, on the default in-app channel, has one notification too.
    assert notified(world)["aud_national"] == [f"Dawa: {len(flags)} new alerts"]
    # Each flag's own row stays in the history, folded into the run's message.
    assert {d.status for d in deliveries(world, kind="flag")} == {"digested"}
    assert len(deliveries(world, kind="batch")) == 2

    # A later run with one new flag sends that flag on its own.
    post(world, entry("dispense", 5, facility="H1", item="MOR10", lot="L1", at=day(date(2026, 6, 14)),
                      entry_id="no-rx-late"), now=day(date(2026, 6, 14)))
    world.commit()
    later = scan_and_alert(world, s, NOW + timedelta(hours=1))
    assert later.started == 1, later.summary()
    assert len(mailbox.messages) == 2 and mailbox.messages[1][2]["Subject"] == "Nouveau signalement (moyenne) à \u2068H1\u2069"


def test_a_digest_gathers_a_run_and_sends_one_mail_a_week(world, mailbox):
    _suspicious(world, 3)
    prefer(world, "aud_tripoli", "email", "tripoli.audit@example.org", mode="digest")
    s = settings(smtp_port=mailbox.port)
    result = scan_and_alert(world, s, NOW)
    assert result.held == result.started >= 3 and mailbox.messages == []
    digest = weekly_digest(world, s, NOW + timedelta(days=7))
    assert digest.sent == 1 and len(mailbox.messages) == 1
    assert mailbox.messages[0][2]["Subject"] == f"Dawa weekly digest: {result.started} alerts"


def test_an_auditors_channel_is_a_digest_unless_asked_otherwise(engine, Session):
    with Session() as s:
        populate(s)
    url = database_url(engine)
    runner = CliRunner()
    for name, address in (("aud_tripoli", "a@example.org"), ("mgr_h1", "m@example.org")):
        r = runner.invoke(app, ["alerts", "prefer", name, "email", "--address", address, "--db", url])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["alerts", "prefer", "aud_national", "email", "--address", "n@example.org",
                            "--mode", "immediate", "--db", url])
    assert r.exit_code == 0, r.output
    with Session() as s:
        modes = {name: s.scalars(select(AlertPreference.mode).where(AlertPreference.user_id == user(s, name).id)).one()
                 for name in ("aud_tripoli", "mgr_h1", "aud_national")}
    assert modes == {"aud_tripoli": "digest", "mgr_h1": "immediate", "aud_national": "immediate"}


def test_a_lot_past_its_date_is_told_as_expired_not_as_expiring(world):
    expired_on = NOW.date() - timedelta(days=36)
    post(world, entry("receipt", 40, facility="HC2", item="GLOVE", lot="G0", expiry_date=expired_on, at=MARCH),
         now=MARCH)
    world.commit()
    result = stock_alerts(world, settings(), NOW)
    assert result.started == 1
    titles = notified(world)["mgr_hc2"]
    assert titles == [f"Lot G0 of GLOVE expired on {expired_on.isoformat()} at HC2"]
    body = deliveries(world, kind="expired")[0].body
    assert "40 pieces still on hand, to be written off" in body
    assert not deliveries(world, kind="expiring")
    assert stock_alerts(world, settings(), NOW + timedelta(days=1)).started == 0


def test_a_lot_told_as_expiring_is_told_again_when_it_expires(world):
    expiry = NOW.date() + timedelta(days=10)
    post(world, entry("receipt", 40, facility="HC2", item="GLOVE", lot="G9", expiry_date=expiry, at=MARCH), now=MARCH)
    world.commit()
    assert stock_alerts(world, settings(), NOW).started == 1
    assert stock_alerts(world, settings(), NOW + timedelta(days=11)).started == 1
    assert notified(world)["mgr_hc2"] == [f"Lot G9 of GLOVE expires within 30 days at HC2",
                                          f"Lot G9 of GLOVE expired on {expiry.isoformat()} at HC2"]


def test_one_run_tells_a_manager_of_a_stockout_and_an_expiry_in_one_message(world):
    stocked_out(world)
    post(world, entry("receipt", 5, facility="H1", item="GLOVE", lot="G1", expiry_date=NOW.date() + timedelta(days=20),
                      at=MARCH), now=MARCH)
    world.commit()
    result = stock_alerts(world, settings(), NOW)
    assert result.started == 2 and result.in_app == 3  # mgr_h1, mgr_tripoli and mgr_national: one each
    got = notified(world)
    assert got["mgr_h1"] == ["Dawa: 2 new alerts"]
    body = deliveries(world, kind="batch", user_id=user(world, "mgr_h1").id)[0].body
    assert "Stockout: MOR10 at H1" in body and "Lot G1 of GLOVE expires within 30 days at H1" in body


def test_a_long_run_lists_the_strongest_and_counts_the_rest(world, monkeypatch):
    from web.alerts import dispatch

    monkeypatch.setattr(dispatch, "BATCH_LINES", 2)
    _suspicious(world, 4)
    result = scan_and_alert(world, settings(), NOW)
    assert result.started >= 4
    row = deliveries(world, kind="batch", user_id=user(world, "aud_national").id)[0]
    assert row.body.count("\n- [") == 2
    assert f"- and {result.started - 2} more: see them all in Dawa." in row.body
    assert row.link == "http://dawa.test/flags"


def test_lowering_a_ceiling_tells_auditors_nothing_about_dispensings_made_under_the_old_one(world):
    from stock.masterdata import add_prescription
    from stock.models import Item

    add_prescription(world, "RX9", "LY0000000001", "H1", "MOR10", 1000, 30, date(2026, 6, 1))
    post(world, [entry("receipt", 1000, facility="H1", item="MOR10", lot="L1", at=day(date(2026, 6, 1)))]
         + [entry("dispense", 50, facility="H1", item="MOR10", lot="L1", prescription_id="RX9",
                  at=day(date(2026, 6, 2 + i)), entry_id=f"legal-{i}") for i in range(6)],
         now=day(date(2026, 6, 8)))
    world.commit()
    s = settings()
    first = scan_and_alert(world, s, NOW)
    before = len(deliveries(world))
    # The ministry lowers the morphine ceiling from 60 to 40; the next scan re-reads those days.
    world.scalars(select(Item).where(Item.code == "MOR10")).one().max_dispense_quantity = 40
    world.commit()
    post(world, entry("receipt", 10, facility="H1", item="MOR10", lot="L1", at=day(date(2026, 6, 14))),
         now=day(date(2026, 6, 14)))
    world.commit()
    again = scan_and_alert(world, s, NOW + timedelta(hours=1))
    assert "nothing new" not in again.summary()
    assert again.started == 0, (first.summary(), again.summary())
    assert len(deliveries(world)) == before
    ceilings = [f for f in world.scalars(select(Flag)) if "protocol ceiling" in f.reason]
    assert ceilings == []
