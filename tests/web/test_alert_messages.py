"""Every kind of alert, composed once as messages, reaches its readers in French and Arabic: by
e-mail (a real SMTP server on loopback), by webhook (a real HTTP server) and in the app, where it
reads in the language the reader has when reading. Nothing English is left but names and codes,
which are isolated for bidirectional text."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from stock.messages import code, day as on_day, msg, num, qty
from stock.models import Facility, User
from tests.web.alerts_world import NOW, Hook, Mailbox, populate, prefer, settings, user
from tests.web.bidi_text import FSI, PDI, english_left
from web.alerts.dispatch import Alert, Tally, announce, close_run, deliver_pending, send_digests
from web.alerts.messages import compose
from web.alerts.models import AlertDelivery, Notification
from web.alerts.notices import shown

REASON = msg("Dispensed %(qty)s of %(item)s in one dispensing, over the protocol ceiling of %(ceiling)s "
             "(%(ratio)sx), by user %(user)s at %(facility)s %(when)s.", qty=qty(90, "tablet"),
             item=code("Morphine 10 mg tablet"), ceiling=num(60), ratio=num(1.5, 1), user=code("u-BEN-HC01-02"),
             facility=code("H1"), when=msg("on %(date)s at %(hour)sh", date=on_day(NOW.date()), hour=code("23")))
STOCK = {"facility": "H1", "facility_name": "Tripoli Central Hospital", "item": "MOR10",
         "item_name": "Morphine 10 mg tablet", "unit": "tablet"}
LOT = {**STOCK, "lot": "L-7/26", "on_hand": "40"}
KINDS = {
    "flag": {"severity": "high", "facility": "H1", "reason": str(REASON), "messages": [REASON.to_json()],
             "score": "0.93", "flag_id": "F0123456789abcdef01234567", "detectors": "prescriptions,users"},
    "stockout": {**STOCK, "on_hand": "0", "amc": "30", "months": "0"},
    "low_stock": {**STOCK, "on_hand": "12", "amc": "30", "months": "0.4"},
    "expiring": {**LOT, "expiry": "2026-07-10", "days": "30"},
    "expired": {**LOT, "expiry": "2026-05-10"},
    "count_short": {**STOCK, "date": "2026-06-14", "counted": "80", "book": "100", "short": "20",
                    "entry_id": "count-1", "recorded_by": "u9"},
    "chain_broken": {"facility": "H1", "problem": "H1: entry 12 does not hash to its stored hash"},
    "drift": {"facility": "H1", "problem": "H1 MOR10 L1: balance 90, ledger 100"},
    "audit_broken": {"problem": "record 7 does not hash to its stored hash"},
    "heads_witnessed": {"signed_at": "2026-06-15T04:00:00+00:00", "file": "/var/lib/dawa/heads/1.json",
                        "heads": '{"H1": "ab12"}'},
}
# Who hears what: each facility manager of H1 by one channel and language.
ROUTES = [("mgr_h1", "email", "fr"), ("mgr_h1", "webhook", "ar"), ("mgr_tripoli", "email", "ar"),
          ("mgr_tripoli", "webhook", "fr"), ("mgr_national", "in_app", "ar")]


@pytest.fixture
def world(session):
    populate(session)
    return session


@pytest.fixture
def receivers(world):
    box, hook = Mailbox(), Hook()
    for username, channel, lang in ROUTES:
        address = {"email": f"{username}@example.org", "webhook": hook.url}.get(channel)
        prefer(world, username, channel, address, language=lang)
    yield box, hook
    box.stop()
    hook.stop()


def _clean(text: str, lang: str, where: str) -> None:
    assert not english_left(text, lang), (where, lang, english_left(text, lang), text)
    assert text.count(FSI) == text.count(PDI)


def _run(world, alerts: list[Alert], s) -> Tally:
    tally = Tally()
    for alert in alerts:
        announce(world, alert, NOW, tally)
    close_run(world, s, NOW, tally)
    world.commit()
    deliver_pending(world, s, NOW, tally)
    assert tally.failed == 0, tally.errors
    return tally


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_reaches_email_webhook_and_app_in_french_and_arabic(world, receivers, kind):
    box, hook = receivers
    s = settings(smtp_port=box.port, smtp_from="alerts@dawa.test")
    h1 = world.scalars(select(Facility).where(Facility.code == "H1")).one()
    _run(world, [Alert(f"{kind}:test", kind, "high", h1, ("facility_manager",), KINDS[kind],
                       "http://dawa.test/stock")], s)

    mails = {tuple(rcpts): m for _, rcpts, m in box.messages}
    for username, lang in (("mgr_h1", "fr"), ("mgr_tripoli", "ar")):
        mail = mails[(f"{username}@example.org",)]
        assert mail["Content-Language"] == lang
        plain, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
        for text in (mail["Subject"], plain):
            _clean(text, lang, "e-mail")
        assert FSI in mail["Subject"] + plain and "<bdi>" in html and FSI not in html.split("</title>")[1]
        _clean(html, lang, "e-mail html")
    by_lang = {p["language"]: p for p in hook.payloads()}
    assert set(by_lang) == {"fr", "ar"}
    for lang, payload in by_lang.items():
        _clean(payload["title"] + "\n" + payload["body"], lang, "webhook")
        assert payload["messages"]["title"]["key"]  # a client may render it in its own reader's language
    [note] = world.scalars(select(Notification).where(Notification.user_id == user(world, "mgr_national").id))
    for lang in ("ar", "fr"):
        view = shown(note, lang)
        _clean(str(view.title) + "\n" + "\n".join(view.lines), lang, "in-app")
        assert "<bdi>" in str(view.title) + "".join(view.lines)


def test_plurals_in_every_language():
    def title(days: int, lang: str) -> str:
        return compose("expiring", {**KINDS["expiring"], "days": str(days)}).render(lang).title

    assert "within 1 day at" in title(1, "en") and "within 30 days at" in title(30, "en")
    assert "dans 1 jour au plus" in title(1, "fr") and "dans 30 jours au plus" in title(30, "fr")
    arabic = {n: title(n, "ar") for n in (0, 1, 2, 3, 11, 100)}
    assert "يوم في" in arabic[1] and "يومين" in arabic[2] and "أيام" in arabic[3] and "يومًا" in arabic[11]
    assert "يوم في" in arabic[100] and len({arabic[n] for n in (1, 2, 3, 11)}) == 4
    low = compose("low_stock", KINDS["low_stock"]).render("en").body
    assert "12 tablets on hand, 0.4 months of stock" in low
    one = compose("low_stock", {**KINDS["low_stock"], "months": "1", "on_hand": "1"}).render("en").body
    assert "1 tablet on hand, 1 month of stock" in one


def test_a_run_and_a_digest_are_one_message_each_in_the_recipients_language(world, receivers):
    box, hook = receivers
    s = settings(smtp_port=box.port, smtp_from="alerts@dawa.test")
    h1 = world.scalars(select(Facility).where(Facility.code == "H1")).one()
    alerts = [Alert(f"{k}:run", k, "high", h1, ("facility_manager",), KINDS[k], f"http://dawa.test/{k}")
              for k in ("flag", "stockout", "expired")]
    _run(world, alerts, s)
    mails = {tuple(rcpts): m for _, rcpts, m in box.messages}
    fr, ar = mails[("mgr_h1@example.org",)], mails[("mgr_tripoli@example.org",)]
    assert fr["Subject"] == "Dawa\u00a0: 3 nouvelles alertes" and ar["Subject"] == f"دواء: {FSI}3{PDI} تنبيهات جديدة"
    for mail, lang in ((fr, "fr"), (ar, "ar")):
        plain = mail.get_body(("plain",)).get_content()
        assert plain.count("- [") == 3
        _clean(plain, lang, "batch")

    # The same alerts held for a weekly digest: one message listing them, in Arabic.
    world.execute(update(AlertDelivery).values(status="held"))
    world.commit()
    box.messages.clear()
    tally = Tally()
    send_digests(world, s, NOW, tally)
    close_run(world, s, NOW, tally)
    world.commit()
    deliver_pending(world, s, NOW, tally)
    digests = {tuple(rcpts): m for _, rcpts, m in box.messages}
    ar = digests[("mgr_tripoli@example.org",)]
    assert ar["Subject"].startswith("الملخص الأسبوعي من دواء")
    _clean(ar["Subject"] + ar.get_body(("plain",)).get_content(), "ar", "digest")


def test_an_in_app_alert_reads_in_the_language_the_reader_has_now(live_server):
    from stock.ledger import post
    from tests.stock.builders import entry
    from web.alerts.jobs import stock_alerts

    with live_server.Session() as s:
        post(s, entry("dispense", 90, facility="H1", item="MOR10", lot="L1"))
        s.commit()
        assert stock_alerts(s, settings(), NOW).started == 1
        s.execute(update(User).where(User.username == "manager_h1").values(language="ar"))
        s.commit()
    c = live_server.login("manager_h1")
    page = c.get("/notifications").text
    assert "نفاد المخزون: <bdi>MOR10</bdi> في <bdi>H1</bdi>" in page
    with live_server.Session() as s:
        s.execute(update(User).where(User.username == "manager_h1").values(language="fr"))
        s.commit()
    page = c.get("/notifications").text
    assert "Rupture de stock\u00a0: <bdi>MOR10</bdi> à <bdi>H1</bdi>" in page
    assert not re.search("نفاد المخزون", page)
