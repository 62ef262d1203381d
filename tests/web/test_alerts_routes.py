"""In-app notifications in the web app, served for real: a user sees and acknowledges their own,
never another's."""

from __future__ import annotations

import re

from sqlalchemy import select

from stock.ledger import post
from tests.stock.builders import entry
from tests.web.alerts_world import NOW, settings
from tests.web.conftest import page_csrf
from web.alerts.jobs import stock_alerts
from web.alerts.models import Notification
from web.models import AuditRecord


def alerted(live_server) -> dict[str, int]:
    """A stockout at H1, told by the stock job: each notified user's notification id."""
    with live_server.Session() as s:
        post(s, entry("dispense", 90, facility="H1", item="MOR10", lot="L1"))
        s.commit()
        result = stock_alerts(s, settings(), NOW)
        assert result.started == 1
        from stock.models import User

        rows = s.execute(select(User.username, Notification.id).join(User, User.id == Notification.user_id))
        return dict(rows.all())


def test_a_manager_sees_and_acknowledges_their_notification(live_server):
    ids = alerted(live_server)
    assert set(ids) == {"manager_h1", "manager_tripoli"}
    c = live_server.login("manager_h1")
    page = c.get("/notifications")
    assert page.status_code == 200
    assert "Stockout: <bdi>MOR10</bdi> at <bdi>H1</bdi>" in page.text
    assert f'id="notification-{ids["manager_h1"]}"' in page.text
    assert 'id="unread"' in page.text

    token = page_csrf(c, "/notifications")
    r = c.post(f"/notifications/{ids['manager_h1']}/ack", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/notifications"
    after = c.get("/notifications").text
    assert 'id="unread"' not in after and "Nothing new." in after
    assert re.search(r'id="read".*Stockout: <bdi>MOR10</bdi> at <bdi>H1</bdi>', after, re.S)
    with live_server.Session() as s:
        note = s.get(Notification, ids["manager_h1"])
        assert note.acknowledged_at is not None
        assert s.scalars(select(AuditRecord).where(AuditRecord.action == "notification_acknowledged")).one()
        # The regional manager's own copy is untouched.
        assert s.get(Notification, ids["manager_tripoli"]).acknowledged_at is None


def test_no_one_sees_or_acknowledges_another_users_notification(live_server):
    ids = alerted(live_server)
    c = live_server.login("pharm_h1")
    assert "Stockout" not in c.get("/notifications").text
    token = page_csrf(c, "/notifications")
    r = c.post(f"/notifications/{ids['manager_h1']}/ack", data={"csrf_token": token})
    assert r.status_code == 404
    with live_server.Session() as s:
        assert s.get(Notification, ids["manager_h1"]).acknowledged_at is None


def test_acknowledging_needs_the_csrf_token(live_server):
    ids = alerted(live_server)
    c = live_server.login("manager_h1")
    r = c.post(f"/notifications/{ids['manager_h1']}/ack", data={})
    assert r.status_code == 403
    with live_server.Session() as s:
        assert s.get(Notification, ids["manager_h1"]).acknowledged_at is None


def test_notifications_need_a_login(live_server):
    r = live_server.client().get("/notifications")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def _badge(html: str) -> str | None:
    link = re.search(r'<a href="/notifications" id="nav-notifications"[^>]*>(.*?)</a>', html, re.S)
    assert link, "every signed-in page links to the notifications"
    count = re.search(r'class="badge badge-unread"[^>]*>([^<]+)<', link.group(1))
    return count.group(1) if count else None


def test_the_nav_links_to_notifications_with_the_unread_count_on_every_page(live_server):
    ids = alerted(live_server)
    c = live_server.login("manager_h1")
    for path in ("/", "/stock", "/notifications"):
        assert _badge(c.get(path, follow_redirects=True).text) == "1", path
    ar = live_server.login("manager_tripoli")
    assert _badge(ar.get("/", follow_redirects=True).text) == "1"
    quiet = live_server.login("pharm_h1")
    assert _badge(quiet.get("/", follow_redirects=True).text) is None

    token = page_csrf(c, "/notifications")
    c.post(f"/notifications/{ids['manager_h1']}/ack", data={"csrf_token": token})
    assert _badge(c.get("/", follow_redirects=True).text) is None
    assert _badge(ar.get("/", follow_redirects=True).text) == "1"  # another reader's count is their own
