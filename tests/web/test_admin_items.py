"""The admin items page against the live app on both databases: the list with lots and stock on
hand, search (as one types and without scripts), paging, and editing an item's protocol ceiling
and controlled flag (validated, audited with old and new value, CSRF-protected, ledger untouched)."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

from babel.numbers import format_decimal
from sqlalchemy import func, select

from stock import chain
from stock.ledger import post
from stock.masterdata import add_item
from stock.models import Item, LedgerEntry
from tests.stock.builders import entry
from tests.web.conftest import page_csrf
from web.models import AuditRecord


def _row(html: str, code: str) -> list[str]:
    """The text of each cell in the items table's row for ``code``."""
    row = html.split(f'id="item-{code}"')[1].split("</tr>")[0]
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def _codes(html: str) -> list[str]:
    return re.findall(r'data-item="([^"]+)"', html)


def _set_language(client, lang: str) -> None:
    r = client.post("/language", data={"lang": lang, "csrf_token": page_csrf(client)})
    assert r.status_code == 303


def test_items_page_lists_items_with_lots_and_stock_on_hand(live_server):
    page = live_server.login("admin").get("/admin/items")
    assert page.status_code == 200
    assert _codes(page.text) == ["GLOVE", "INSG", "MOR10"]
    # code, name, ATC, form, unit, controlled, ceiling, lots, on hand (H1 100 - 10 + HC2 50)
    assert _row(page.text, "MOR10") == ["MOR10", "Morphine 10 mg tablet", "N02AA01", "", "tablet", "Yes", "60",
                                        "2", "140"]
    assert _row(page.text, "INSG")[5:] == ["No", "—", "1", "20"]
    assert _row(page.text, "GLOVE")[5:] == ["No", "—", "0", "0"]
    assert '<a href="/admin/items">' in page.text  # in the admin navigation
    assert "3 items" in page.text


def test_items_numbers_follow_the_page_language(live_server):
    with live_server.Session() as s:
        post(s, [entry("receipt", "1234.5", facility="B1", item="INSG", lot="L4", expiry_date=date(2027, 9, 30))])
        s.commit()
    c = live_server.login("admin")
    assert _row(c.get("/admin/items").text, "INSG")[-2:] == ["2", "1,254.5"]
    _set_language(c, "fr")
    page = c.get("/admin/items")
    assert 'lang="fr"' in page.text and "Articles" in page.text
    assert _row(page.text, "INSG")[-1] == format_decimal(Decimal("1254.5"), locale="fr")
    assert "1 254,5" in _row(page.text, "INSG")[-1].replace("\u202f", " ").replace("\xa0", " ")
    _set_language(c, "ar")
    page = c.get("/admin/items")
    assert 'dir="rtl"' in page.text
    assert _row(page.text, "INSG")[-1] == format_decimal(Decimal("1254.5"), locale="ar")


def test_search_by_code_name_or_atc_with_and_without_htmx(live_server):
    c = live_server.login("admin")
    assert _codes(c.get("/admin/items", params={"q": "morph"}).text) == ["MOR10"]
    assert _codes(c.get("/admin/items", params={"q": "a10ae"}).text) == ["INSG"]  # ATC, any case
    assert _codes(c.get("/admin/items", params={"q": "  GLOVE "}).text) == ["GLOVE"]
    none = c.get("/admin/items", params={"q": "%"})  # a wildcard is taken literally
    assert _codes(none.text) == [] and "No items match." in none.text
    # The form works without scripts: a plain GET with the typed text kept in the box.
    page = c.get("/admin/items", params={"q": "insulin"})
    assert 'id="f-q" name="q" type="search" value="insulin"' in page.text and "<html" in page.text
    # As one types, htmx asks for the results alone.
    fragment = c.get("/admin/items", params={"q": "insulin"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert _codes(fragment.text) == ["INSG"] and "1 item" in fragment.text
    # htmx restoring a page from history gets the whole page.
    restored = c.get("/admin/items", params={"q": "insulin"},
                     headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restored.text


def test_items_are_paged(live_server):
    with live_server.Session() as s:
        for n in range(120):
            add_item(s, f"X{n:03d}", f"Extra item {n}", "piece")
        s.commit()
    c = live_server.login("admin")
    first = c.get("/admin/items")
    assert len(_codes(first.text)) == 50 and "123 items" in first.text and "Page 1 of 3" in first.text
    assert 'href="/admin/items?page=2"' in first.text and 'rel="prev"' not in first.text
    last = c.get("/admin/items", params={"page": 3})
    assert len(_codes(last.text)) == 23 and _codes(last.text)[-1] == "X119" and 'rel="next"' not in last.text
    seen = [code for p in (1, 2, 3) for code in _codes(c.get("/admin/items", params={"page": p}).text)]
    assert len(seen) == len(set(seen)) == 123
    # Paging keeps the search.
    searched = c.get("/admin/items", params={"q": "extra item", "page": 2})
    assert len(_codes(searched.text)) == 50 and 'href="/admin/items?page=3&amp;q=extra+item"' in searched.text
    assert c.get("/admin/items", params={"page": 0}).status_code == 422


def _item(live_server, code: str) -> Item:
    with live_server.Session() as s:
        return s.scalars(select(Item).where(Item.code == code)).one()


def _edits(live_server) -> list[AuditRecord]:
    with live_server.Session() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == "item_updated")
                              .order_by(AuditRecord.id)))


def test_editing_an_item_is_validated_and_audited_and_leaves_the_ledger_alone(live_server):
    c = live_server.login("admin")
    with live_server.Session() as s:
        ledger_rows = s.scalar(select(func.count()).select_from(LedgerEntry))
    form = c.get("/admin/items/MOR10")
    assert form.status_code == 200
    assert 'value="60"' in form.text and 'id="f-controlled" name="controlled" type="checkbox" value="1" checked' \
        in form.text
    token = page_csrf(c, "/admin/items/MOR10")

    for typed, message in (("abc", "Enter a number"), ("0", "greater than zero"), ("-5", "greater than zero"),
                           ("2.5", "whole tablet"), ("1000000", "under 1,000,000"), ("NaN", "Enter a number")):
        r = c.post("/admin/items/MOR10", data={"csrf_token": token, "max_dispense_quantity": typed, "controlled": "1"})
        assert r.status_code == 422, typed
        field = r.text.split('class="field has-error"')[1].split("</div>")[0]
        assert f'value="{typed}"' in field and 'aria-invalid="true"' in field, typed  # kept, marked
        assert message in field.split('id="f-max_dispense_quantity-error"')[1], (typed, field)
    r = c.post("/admin/items/INSG", data={"csrf_token": token, "max_dispense_quantity": "1.0005"})
    assert r.status_code == 422 and "three decimal places" in r.text
    assert _item(live_server, "MOR10").max_dispense_quantity == 60 and _edits(live_server) == []

    r = c.post("/admin/items/MOR10", data={"csrf_token": token, "max_dispense_quantity": "90"})  # unchecked
    assert r.status_code == 303 and r.headers["location"] == "/admin/items/MOR10?done=saved"
    assert 'id="done"' in c.get(r.headers["location"]).text
    item = _item(live_server, "MOR10")
    assert item.max_dispense_quantity == 90 and item.controlled is False
    (rec,) = _edits(live_server)
    with live_server.Session() as s:
        admin_id = s.scalar(select(AuditRecord.user_id).where(AuditRecord.action == "login"))
    assert rec.user_id == admin_id and rec.object_type == "item" and rec.object_id == "MOR10" and rec.at
    assert json.loads(rec.detail) == {"max_dispense_quantity": {"old": "60", "new": "90"},
                                      "controlled": {"old": True, "new": False}, "via": "web"}

    # The same values again change nothing and record nothing.
    r = c.post("/admin/items/MOR10", data={"csrf_token": token, "max_dispense_quantity": "90"})
    assert r.headers["location"].endswith("done=unchanged") and len(_edits(live_server)) == 1
    # A French page reads a French decimal; an empty ceiling removes it.
    _set_language(c, "fr")
    r = c.post("/admin/items/INSG", data={"csrf_token": token, "max_dispense_quantity": "2,5", "controlled": "1"})
    assert r.status_code == 303 and _item(live_server, "INSG").max_dispense_quantity == Decimal("2.5")
    r = c.post("/admin/items/INSG", data={"csrf_token": token, "max_dispense_quantity": ""})
    assert r.status_code == 303 and _item(live_server, "INSG").max_dispense_quantity is None
    assert json.loads(_edits(live_server)[-1].detail)["max_dispense_quantity"] == {"old": "2.5", "new": None}

    with live_server.Session() as s:  # master data only: the ledger and its chains are as they were
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == ledger_rows
        assert chain.verify(s).ok


def test_item_edit_needs_the_csrf_token_and_an_existing_item(live_server):
    c = live_server.login("admin")
    r = c.post("/admin/items/MOR10", data={"max_dispense_quantity": "5"})
    assert r.status_code == 403
    r = c.post("/admin/items/MOR10", data={"max_dispense_quantity": "5", "csrf_token": "forged"})
    assert r.status_code == 403
    assert _item(live_server, "MOR10").max_dispense_quantity == 60 and _edits(live_server) == []
    token = page_csrf(c, "/admin/items")
    assert c.get("/admin/items/NOPE").status_code == 404
    assert c.post("/admin/items/NOPE", data={"csrf_token": token, "max_dispense_quantity": "5"}).status_code == 404


def test_items_pages_are_for_admins_only(live_server):
    for username in ("pharm_h1", "manager_tripoli", "auditor"):
        c = live_server.login(username)
        assert '/admin/items"' not in c.get("/", follow_redirects=True).text
        for path in ("/admin/items", "/admin/items/MOR10"):
            assert c.get(path).status_code == 403, (username, path)
        token = page_csrf(c)
        r = c.post("/admin/items/MOR10", data={"csrf_token": token, "max_dispense_quantity": "5"})
        assert r.status_code == 403
    assert _item(live_server, "MOR10").max_dispense_quantity == 60
