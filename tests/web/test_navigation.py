"""Navigation by role against the live app on both databases: where each role lands after
logging in (and at /), and one pharmacy nav."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from anomaly.models import Flag
from tests.web.conftest import login
from tests.web.test_auditor import server  # noqa: F401 - a world with flags raised

LANDS = {
    "auditor": "/flags?status=open,assigned",
    "manager_h1": "/stock/H1",
    "pharm_h1": "/pharmacy/H1/visit",
    "admin": "/admin/users",
}


def _follow(client, path: str) -> str:
    """The path the client ends on, following redirects one at a time."""
    for _ in range(5):
        r = client.get(path)
        if r.status_code != 303:
            assert r.status_code == 200, (path, r.status_code)
            return path
        path = r.headers["location"]
    raise AssertionError(f"too many redirects from {path}")


@pytest.mark.parametrize("username", sorted(LANDS))
def test_each_role_lands_on_its_own_page_after_login_and_at_the_root(live_server, username):
    c = live_server.client()
    r = login(c, username)
    assert r.status_code == 303
    assert _follow(c, r.headers["location"]) == LANDS[username]
    assert _follow(c, "/") == LANDS[username]


def test_the_auditor_lands_on_open_and_assigned_cases_only(server):
    with server.Session() as s:
        ids = list(s.scalars(select(Flag.flag_id).order_by(Flag.flag_id)))
        assert len(ids) >= 3
        s.execute(update(Flag).where(Flag.flag_id == ids[0]).values(status="dismissed"))
        s.execute(update(Flag).where(Flag.flag_id == ids[1]).values(status="assigned"))
        s.commit()
    c = server.login("aud_nat")
    page = c.get("/", follow_redirects=True)
    assert page.status_code == 200 and str(page.url).endswith("/flags?status=open,assigned")
    assert f'href="/flags/{ids[0]}"' not in page.text and f'href="/flags/{ids[1]}"' in page.text
    assert '<option value="open,assigned" selected>' in page.text
    assert c.get("/flags", params={"status": "open,bogus"}).status_code == 422


def test_one_pharmacy_nav(live_server):
    page = live_server.login("pharm_h1").get("/pharmacy/H1/receipt")
    main = page.text.split('<ul class="nav-links">')[1].split("</ul>")[0]
    assert 'href="/pharmacy"' in main and "/pharmacy?page=" not in main and "Receipts" not in main
    sub = page.text.split('class="pharmacy-nav"')[1].split("</nav>")[0]
    assert 'href="/pharmacy/H1/receipt" aria-current="page">Receipt<' in sub
