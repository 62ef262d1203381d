"""The alert jobs called directly with a controlled clock on hand-built ledgers (SQLite and
PostgreSQL): what is announced, to whom, once per state change."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select, text

from stock.ledger import post
from tests.web.alerts_world import (MARCH, NOW, day, deliveries, entry, later, notified, populate, prefer, settings,
                                    stocked_out)
from web.alerts.jobs import JOBS, scan_and_alert, stock_alerts, verify_ledger, weekly_digest
from web.alerts.models import AlertState

@pytest.fixture
def world(session):
    populate(session)
    return session


def test_stockout_told_to_the_facility_region_and_national_managers_only(world):
    stocked_out(world)
    result = stock_alerts(world, settings(), NOW)
    assert result.started == 1 and result.in_app == 3 and result.failed == 0
    got = notified(world)
    assert set(got) == {"mgr_h1", "mgr_tripoli", "mgr_national"}
    assert got["mgr_h1"] == ["Stockout: MOR10 at H1"]
    state = world.get(AlertState, "stockout:H1:MOR10")
    assert state.state == "active" and state.since == NOW


def test_stockout_announced_once_then_again_only_after_it_resolves_and_returns(world):
    stocked_out(world)
    s = settings()
    assert stock_alerts(world, s, NOW).started == 1
    again = stock_alerts(world, s, later(1))
    assert again.started == 0 and again.in_app == 0
    assert len(notified(world)["mgr_h1"]) == 1

    post(world, entry("receipt", 300, facility="H1", item="MOR10", lot="L1", at=later(2)), now=later(2))
    world.commit()
    resolved = stock_alerts(world, s, later(2))
    assert resolved.resolved == 1 and resolved.started == 0
    assert world.get(AlertState, "stockout:H1:MOR10").state == "resolved"
    assert stock_alerts(world, s, later(3)).started == 0

    post(world, entry("dispense", 300, facility="H1", item="MOR10", lot="L1", at=later(4)), now=later(4))
    world.commit()
    returned = stock_alerts(world, s, later(4))
    assert returned.started == 1
    assert notified(world)["mgr_h1"] == ["Stockout: MOR10 at H1", "Stockout: MOR10 at H1"]
    world.expire_all()
    assert world.get(AlertState, "stockout:H1:MOR10").since == later(4)


def test_low_stock_below_minimum_months(world):
    # 300 ml received, 90 a month used March-May: 30 left is a third of a month.
    post(world, [entry("receipt", 300, facility="HC2", item="INSG", lot="I1", at=MARCH)]
         + [entry("dispense", 90, facility="HC2", item="INSG", lot="I1", at=day(date(2026, m, 12)))
            for m in (3, 4, 5)], now=day(date(2026, 5, 12)))
    world.commit()
    result = stock_alerts(world, settings(), NOW)
    assert result.started == 1
    got = notified(world)
    assert set(got) == {"mgr_hc2", "mgr_tripoli", "mgr_national"}
    assert got["mgr_hc2"] == ["Low stock: INSG at HC2"]
    body = deliveries(world, kind="low_stock")[0].body
    assert "30 ml on hand, 0.3 months of stock at an average use of 30 ml a month" not in body
    assert "30 ml on hand, 0.3 months of stock at an average use of 90 ml a month" in body
    # Enough stock makes it resolve, without a message.
    post(world, entry("receipt", 1000, facility="HC2", item="INSG", lot="I1", at=later(1)), now=later(1))
    world.commit()
    assert stock_alerts(world, settings(), later(1)).resolved == 1
    assert len(notified(world)["mgr_hc2"]) == 1


def test_expiring_lot_told_at_each_threshold_it_crosses(world):
    prefer(world, "mgr_h1", "in_app", min_severity="low")
    expiry = NOW.date() + timedelta(days=75)
    post(world, entry("receipt", 500, facility="H1", item="GLOVE", lot="G7", expiry_date=expiry, at=MARCH), now=MARCH)
    world.commit()
    s = settings()
    first = stock_alerts(world, s, NOW)            # 75 days: within 90
    assert first.started == 1
    assert notified(world)["mgr_h1"] == ["Lot G7 of GLOVE expires within 90 days at H1"]
    assert stock_alerts(world, s, later(5)).started == 0             # 70 days: nothing new
    assert stock_alerts(world, s, later(20)).started == 1            # 55 days: within 60
    assert stock_alerts(world, s, later(50)).started == 1            # 25 days: within 30
    assert notified(world)["mgr_h1"][1:] == ["Lot G7 of GLOVE expires within 60 days at H1",
                                             "Lot G7 of GLOVE expires within 30 days at H1"]
    # Managers on the default preference (from medium) heard of the 60- and 30-day thresholds only.
    assert notified(world)["mgr_tripoli"] == ["Lot G7 of GLOVE expires within 60 days at H1",
                                              "Lot G7 of GLOVE expires within 30 days at H1"]
    high = deliveries(world, kind="expiring", severity="high")
    assert {d.alert_key for d in high} == {"expiring_30:H1:GLOVE:G7"}


def test_first_sight_of_a_lot_near_expiry_tells_the_nearest_threshold_only(world):
    expiry = NOW.date() + timedelta(days=10)
    post(world, entry("receipt", 5, facility="HC2", item="GLOVE", lot="G1", expiry_date=expiry, at=MARCH), now=MARCH)
    world.commit()
    assert stock_alerts(world, settings(), NOW).started == 1
    assert notified(world)["mgr_hc2"] == ["Lot G1 of GLOVE expires within 30 days at HC2"]
    keys = set(world.scalars(select(AlertState.key).where(AlertState.state == "active")))
    assert {"expiring_30:HC2:GLOVE:G1", "expiring_60:HC2:GLOVE:G1", "expiring_90:HC2:GLOVE:G1"} <= keys


def test_recent_count_short_of_book_told_once(world):
    post(world, entry("receipt", 100, facility="H1", item="MOR10", lot="L1", at=MARCH), now=MARCH)
    post(world, entry("count", 80, facility="H1", item="MOR10", lot="L1", at=later(-1), entry_id="count-1",
                      recorded_by="u9"), now=later(-1))
    world.commit()
    result = stock_alerts(world, settings(), NOW)
    assert result.started == 1
    row = deliveries(world, kind="count_short")[0]
    assert row.severity == "high"  # morphine is controlled
    assert "found 80 tablets of Morphine 10 mg tablet where the book said 100: 20 tablets short" in row.body
    assert "count-1" in row.body and "u9" in row.body
    assert stock_alerts(world, settings(), later(1)).started == 0


def test_old_counts_are_not_alerted(world):
    post(world, entry("receipt", 100, facility="H1", item="MOR10", lot="L1", at=MARCH), now=MARCH)
    post(world, entry("count", 80, facility="H1", item="MOR10", lot="L1", at=later(-30)), now=later(-30))
    world.commit()
    assert stock_alerts(world, settings(), NOW).started == 0


def test_new_flags_go_to_auditors_whose_scope_covers_the_facility(world):
    post(world, [entry("receipt", 1000, facility="H1", item="MOR10", lot="L1", at=MARCH),
                 entry("dispense", 90, facility="H1", item="MOR10", lot="L1", prescription_id="RX1",
                       at=day(date(2026, 3, 3)), entry_id="overfill")], now=day(date(2026, 3, 3)))
    world.commit()
    s = settings()
    result = scan_and_alert(world, s, NOW)
    assert result.started >= 1, result.summary()
    got = notified(world)
    assert "aud_tripoli" in got and "aud_national" in got
    assert not {"aud_benghazi", "aud_b1", "mgr_h1", "pharm_h1", "admin"} & set(got)
    assert all(t.endswith("at H1") for t in got["aud_tripoli"])
    # Re-running finds nothing new to scan and announces nothing again.
    again = scan_and_alert(world, s, later(1))
    assert again.started == 0 and "nothing new" in again.summary()
    assert notified(world) == got


def test_flags_below_the_recipients_minimum_severity_are_not_sent(world):
    prefer(world, "aud_national", "in_app", min_severity="high")
    prefer(world, "aud_tripoli", "in_app", min_severity="low")
    post(world, [entry("receipt", 1000, facility="H1", item="MOR10", lot="L1", at=MARCH),
                 entry("dispense", 90, facility="H1", item="MOR10", lot="L1", prescription_id="RX1",
                       at=day(date(2026, 3, 3)))], now=day(date(2026, 3, 3)))
    world.commit()
    scan_and_alert(world, settings(), NOW)
    from anomaly.models import Flag

    flags = world.scalars(select(Flag)).all()
    high = [f for f in flags if f.severity == "high"]
    got = notified(world)
    assert len(got["aud_tripoli"]) == len(flags)
    assert len(got.get("aud_national", [])) == len(high)


def test_verify_tells_admins_and_auditors_of_drift_and_a_broken_chain_once(world, engine):
    stocked_out(world)
    s = settings()
    clean = verify_ledger(world, s, NOW)
    assert clean.started == 0 and "0 broken, 0 balance(s) drifted" in clean.summary()
    with engine.begin() as conn:
        conn.execute(text("UPDATE balance SET on_hand = on_hand + 5000 WHERE facility_id = "
                          "(SELECT id FROM facility WHERE code = 'H1')"))
        conn.execute(text("UPDATE chain_head SET head_hash = :h WHERE facility_id = "
                          "(SELECT id FROM facility WHERE code = 'H1')"), {"h": "f" * 64})
    result = verify_ledger(world, s, later(1))
    assert result.started == 2, result.summary()
    got = notified(world)
    assert set(got) == {"admin", "aud_tripoli", "aud_national"}
    # Both findings of one run reach each reader as one message that lists them.
    assert got["admin"] == ["Dawa: 2 new alerts"]
    listed = deliveries(world, kind="batch", channel="in_app")[0].body
    assert "Ledger hash chain broken at H1" in listed and "Stock balance differs from the ledger at H1" in listed
    assert verify_ledger(world, s, later(2)).started == 0
    body = deliveries(world, kind="drift")[0].body
    assert "H1 MOR10 lot L1: ledger says 0, balance says 5" in body


def test_digest_holds_alerts_and_sends_one_message_per_recipient(world):
    prefer(world, "mgr_h1", "in_app", mode="digest", min_severity="low")
    stocked_out(world)
    expiry = NOW.date() + timedelta(days=20)
    post(world, entry("receipt", 5, facility="H1", item="GLOVE", lot="G1", expiry_date=expiry, at=MARCH), now=MARCH)
    world.commit()
    s = settings()
    result = stock_alerts(world, s, NOW)
    assert result.started == 2 and result.held == 2
    assert "mgr_h1" not in notified(world)
    digest = weekly_digest(world, s, later(7))
    assert digest.in_app == 1
    titles = notified(world)["mgr_h1"]
    assert titles == ["Dawa weekly digest: 2 alerts"]
    assert {d.status for d in deliveries(world, kind="stockout") if d.channel == "in_app"
            and d.preference_id is not None} == {"digested"}
    assert weekly_digest(world, s, later(14)).in_app == 0


def test_every_job_runs_on_an_empty_ledger(world):
    for job in JOBS.values():
        result = job.run(world, settings(), NOW)
        assert result.started == 0 and result.failed == 0, result.summary()


def test_verify_seals_the_audit_trail_and_sends_signed_heads_to_national_auditors(world, tmp_path):
    import json

    from web import audit, witness

    stocked_out(world)
    audit.record(world, None, "login", "user", "someone")
    world.commit()
    key = tmp_path / "witness.pem"
    public = witness.generate_key(key)
    prefer(world, "aud_national", "email", "auditor@example.org")
    world.commit()
    s = settings().model_copy(update={"witness_key_file": key, "witness_dir": tmp_path / "heads"})
    from datetime import datetime, timezone

    # Audit records are written at the real time; the seal takes those older than a few minutes.
    result = verify_ledger(world, s, datetime.now(timezone.utc) + timedelta(minutes=10))
    assert "0 broken" in result.summary() and "heads signed to" in result.summary()
    (path,) = (tmp_path / "heads").iterdir()
    data = witness.read_signed(path, public)  # the signature holds
    assert {h["facility_code"] for h in data["heads"]} >= {"H1"} and data["audit"]["records"] >= 1
    from tests.web.alerts_world import user

    # To the national auditors only (this one by e-mail, as they asked), no one else.
    sent = deliveries(world, kind="heads_witnessed")
    assert {d.user_id for d in sent} == {user(world, "aud_national").id}
    assert not [t for titles in notified(world).values() for t in titles if t.startswith("Signed")]
    (mail,) = deliveries(world, kind="heads_witnessed", channel="email")
    assert mail.title.startswith("Signed ledger and audit chain heads") and mail.address == "auditor@example.org"
    assert json.loads(mail.body[mail.body.index("{"):])["signature"] == data["signature"]


def test_a_flag_about_a_patient_is_announced_with_the_patients_pseudonym(world):
    from anomaly.models import Flag, Scan
    from stock.models import Facility
    from stock.pseudonyms import patient_key, pseudonym

    card = "LY0000000777"
    scan = Scan(started_at=NOW, finished_at=NOW, through_seq=0)
    world.add(scan)
    world.flush()
    h1 = world.scalars(select(Facility).where(Facility.code == "H1")).one()
    world.add(Flag(flag_id="F-card", facility_id=h1.id, subject="patient", subject_id=card, score=0.95,
                   rank_score=0.95, severity="high", detectors="x", reason=f"patient {card} filled 9 times",
                   status="open", created_at=NOW, updated_at=NOW, first_scan_id=scan.id, last_scan_id=scan.id))
    prefer(world, "aud_national", "email", "auditor@example.org")
    world.commit()
    s = settings()
    scan_and_alert(world, s, NOW)
    sent = deliveries(world, kind="flag")
    assert sent and all(card not in d.body + d.title for d in sent)
    assert any(pseudonym(card, patient_key(s)) in d.body for d in sent)
    assert not [b for b in world.scalars(select(AlertState.detail)) if b and card in b]
