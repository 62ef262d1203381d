"""Channels against real receivers on loopback: e-mail to an aiosmtpd server, webhooks to an
http.server, retries with backoff, failures recorded and never blocking the other channels."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests.web.alerts_world import (NOW, Hook, Mailbox, deliveries, free_port, notified, populate, prefer,
                                    settings, stocked_out)
from web.alerts.channels import SIGNATURE_HEADER, DeliveryError, verify_signature, with_retries
from web.alerts.jobs import stock_alerts


@pytest.fixture
def world(session):
    populate(session)
    stocked_out(session)
    return session


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.stop()


@pytest.fixture
def broken_hook():
    h = Hook(status=500)
    yield h
    h.stop()


def test_email_in_each_recipients_language_with_text_and_html(world, mailbox):
    prefer(world, "mgr_h1", "email", "manager.h1@example.org", language="fr")
    prefer(world, "mgr_tripoli", "email", "tripoli@example.org", language="ar")
    prefer(world, "mgr_hc2", "email", "hc2@example.org")  # another facility: must not hear of it
    result = stock_alerts(world, settings(smtp_port=mailbox.port, smtp_from="alerts@dawa.test"), NOW)
    assert result.sent == 2 and result.failed == 0, result.errors
    by_rcpt = {tuple(rcpts): msg for _, rcpts, msg in mailbox.messages}
    assert set(by_rcpt) == {("manager.h1@example.org",), ("tripoli@example.org",)}
    assert all(frm == "alerts@dawa.test" for frm, _, _ in mailbox.messages)

    fr = by_rcpt[("manager.h1@example.org",)]
    # Codes are isolated for bidirectional text (FSI ... PDI) wherever the reader's language is not English.
    assert fr["Subject"] == "Rupture de stock\u00a0: \u2068MOR10\u2069 à \u2068H1\u2069"
    assert fr["To"] == "manager.h1@example.org" and fr["Content-Language"] == "fr"
    plain = fr.get_body(("plain",)).get_content()
    html = fr.get_body(("html",)).get_content()
    assert ("\u2068Morphine 10 mg tablet\u2069 (\u2068MOR10\u2069) est en rupture de stock à "
            "\u2068Tripoli Central Hospital\u2069 (\u2068H1\u2069).") in plain
    assert "Ouvrir dans Dawa: http://dawa.test/stock?facility=H1&amp;item=MOR10" not in plain
    assert "http://dawa.test/stock?facility=H1&item=MOR10" in plain
    assert '<html lang="fr" dir="ltr">' in html and 'href="http://dawa.test/stock?facility=H1&amp;item=MOR10"' in html
    assert "<h1>Rupture de stock\u00a0: <bdi>MOR10</bdi> à <bdi>H1</bdi></h1>" in html

    ar = by_rcpt[("tripoli@example.org",)]
    assert ar["Subject"] == "نفاد المخزون: \u2068MOR10\u2069 في \u2068H1\u2069"
    assert 'dir="rtl"' in ar.get_body(("html",)).get_content()

    sent = deliveries(world, channel="email")
    assert [(d.address, d.status, d.attempts, d.language) for d in sent] == [
        ("manager.h1@example.org", "sent", 1, "fr"), ("tripoli@example.org", "sent", 1, "ar")]


def test_webhook_body_is_signed_with_the_settings_secret(world, hook):
    prefer(world, "mgr_national", "webhook", hook.url)
    result = stock_alerts(world, settings(webhook_secret="s3cret"), NOW)
    assert result.sent == 1, result.errors
    [(headers, body)] = hook.requests
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER.lower()] == expected
    assert verify_signature("s3cret", body, headers[SIGNATURE_HEADER.lower()])
    assert not verify_signature("other", body, headers[SIGNATURE_HEADER.lower()])
    assert not verify_signature("s3cret", body + b" ", headers[SIGNATURE_HEADER.lower()])
    [payload] = hook.payloads()
    assert payload["alert_key"] == "stockout:H1:MOR10" and payload["severity"] == "high"
    assert payload["title"] == "Stockout: MOR10 at H1" and payload["recipient"] == "mgr_national"


def test_failing_endpoint_retried_recorded_and_other_channels_unaffected(world, broken_hook, hook, mailbox):
    prefer(world, "mgr_h1", "webhook", broken_hook.url)
    prefer(world, "mgr_h1", "email", "manager.h1@example.org")
    prefer(world, "mgr_h1", "in_app")
    prefer(world, "mgr_tripoli", "webhook", hook.url)
    result = stock_alerts(world, settings(smtp_port=mailbox.port, retry_attempts=3), NOW)
    assert result.failed == 1 and result.sent == 2 and result.in_app == 2  # mgr_h1 and mgr_national
    assert len(broken_hook.requests) == 3  # every attempt reached the server
    [failed] = deliveries(world, status="failed")
    assert failed.address == broken_hook.url and failed.attempts == 3 and "HTTP 500" in failed.error
    assert failed.sent_at is None
    assert len(mailbox.messages) == 1 and len(hook.requests) == 1
    assert notified(world)["mgr_h1"] == ["Stockout: MOR10 at H1"]


def test_unreachable_smtp_server_fails_only_the_email(world, hook):
    prefer(world, "mgr_h1", "email", "manager.h1@example.org")
    prefer(world, "mgr_h1", "webhook", hook.url)
    closed = free_port()
    result = stock_alerts(world, settings(smtp_port=closed, retry_attempts=2), NOW)
    assert result.failed == 1 and result.sent == 1
    [failed] = deliveries(world, status="failed")
    assert failed.channel == "email" and failed.attempts == 2 and f"127.0.0.1:{closed}" in failed.error
    assert len(hook.requests) == 1


def test_webhooks_are_never_sent_unsigned(world, hook):
    prefer(world, "mgr_h1", "webhook", hook.url)
    result = stock_alerts(world, settings(webhook_secret=None), NOW)
    assert result.failed == 1 and hook.requests == []
    assert "DAWA_ALERTS__WEBHOOK_SECRET" in deliveries(world, status="failed")[0].error


def test_a_delivery_failed_this_run_is_not_resent_by_the_next(world, broken_hook):
    prefer(world, "mgr_h1", "webhook", broken_hook.url)
    s = settings(retry_attempts=2)
    stock_alerts(world, s, NOW)
    stock_alerts(world, s, NOW)
    assert len(broken_hook.requests) == 2


def test_backoff_doubles_between_attempts():
    waits = []

    def fail():
        raise DeliveryError("down")

    result = with_retries(fail, settings(retry_attempts=4, retry_base_delay_s=0.5).alerts, waits.append)
    assert not result.ok and result.attempts == 4 and result.error == "down"
    assert waits == [0.5, 1.0, 2.0]
