"""The DHIS2 push history in the web app: pushes sent through the real HTTP client to the loopback
DHIS2 Web API, one answered with a conflict, one not delivered, read back as a national admin or
manager would, in English, French and Arabic; refused to everyone else. Both databases."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from stock.settings import Dhis2, get_settings
from tests.web.conftest import add_users, page_csrf
from tests.web.dhis2_server import Dhis2Server
from tests.web.test_dhis2_push import MAPPING, METADATA
from web.interop.dhis2 import parse_mapping
from web.interop.dhis2_push import push

NOW = datetime(2026, 4, 2, 8, tzinfo=timezone.utc)


@pytest.fixture
def server():
    s = Dhis2Server(METADATA)
    yield s
    s.close()


def _pushed(live_server, server) -> None:
    """March 2026 sent twice: to the loopback server (a conflict: a data element it does not know),
    then to a server that refuses the credentials."""
    ok = get_settings().model_copy(update={"dhis2": Dhis2(url=server.url, token=server.token)})
    refused = get_settings().model_copy(update={"dhis2": Dhis2(url=server.url, token="wrong-token")})
    with live_server.Session() as s:
        first = push(s, ok, parse_mapping(MAPPING), "2026-03", pushed_by="admin", now=NOW).record
        assert first.status == "WARNING" and first.conflicts
        push(s, refused, parse_mapping(MAPPING), "2026-03", pushed_by="scheduler", now=NOW)
        s.commit()


def test_push_history_shows_the_import_summary_and_each_conflict(live_server, server):
    _pushed(live_server, server)
    page = live_server.login("admin").get("/dhis2/pushes")
    assert page.status_code == 200
    html = page.text
    assert 'href="/dhis2/pushes"' in html                                   # linked from the navigation
    newest, oldest = html.index('id="push-2"'), html.index('id="push-1"')
    assert newest < oldest                                                  # newest first
    row = html[oldest:].split("</tr>")[0]
    assert 'data-status="WARNING"' in row and "Accepted in part" in row
    cells = [c.split("</td>")[0] for c in row.split("<td>")[2:]]
    assert [c.strip() for c in cells[-5:]] == ["6", "4", "0", "2", "0"]  # sent, imported, updated, ignored, deleted
    detail = html.split('id="push-1-detail"')[1].split("</tr>")[0]
    assert "1 conflict reported by DHIS2:" in detail
    assert "UnknownDE01" in detail and "Data element not found or not accessible" in detail
    failed = html.split('id="push-2-detail"')[1].split("</tr>")[0]
    assert 'data-status="FAILED"' in html.split('id="push-2"')[1].split("</tr>")[0]
    assert "DHIS2 refused the credentials (HTTP 401)" in failed
    assert "wrong-token" not in html and server.token not in html           # no credentials on the page


def test_push_history_in_french_and_arabic(live_server, server):
    _pushed(live_server, server)
    c = live_server.login("admin")
    for lang, title, conflicts in (("fr", "Envois vers DHIS2", "1 conflit signalé par DHIS2"),
                                   ("ar", "الإرسال إلى DHIS2", "تعارض واحد أبلغ عنه DHIS2")):
        r = c.post("/language", data={"lang": lang, "csrf_token": page_csrf(c)})
        assert r.status_code == 303
        page = c.get("/dhis2/pushes")
        assert page.status_code == 200
        assert f'lang="{lang}"' in page.text, page.text[:300]
        assert title in page.text and conflicts in page.text


def test_only_national_admins_and_managers_see_it(live_server, server):
    _pushed(live_server, server)
    add_users(live_server.Session, {"manager_national": ("facility_manager", None, None),
                                    "admin_tripoli": ("admin", None, "Tripoli")})
    manager = live_server.login("manager_national")
    page = manager.get("/dhis2/pushes")
    assert page.status_code == 200 and "UnknownDE01" in page.text
    assert 'href="/dhis2/pushes"' in manager.get("/", follow_redirects=True).text  # the nav offers it
    for name in ("manager_tripoli", "manager_h1", "pharm_h1", "auditor", "admin_tripoli"):
        c = live_server.login(name)
        r = c.get("/dhis2/pushes")
        assert r.status_code == 403 and "UnknownDE01" not in r.text, name
        home = c.get("/", follow_redirects=True)
        assert home.status_code == 200 and 'href="/dhis2/pushes"' not in home.text, name
    assert live_server.client().get("/dhis2/pushes").status_code in (303, 401)
