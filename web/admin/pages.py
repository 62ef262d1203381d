"""Admin pages: users (list, disable), facilities (list), items (list, search, edit the protocol
ceiling and the controlled flag) and the ledger's verification status.

Admins only (national or not, an admin's pages cover what their scope shows). Verifying the ledger
re-walks every facility's hash chain and compares cached balances with the ledger, which can take
a while on a large ledger, so it runs only when asked (a button) and its result is audited.

Editing an item changes master data only: the ceiling and the controlled flag are what detection
compares dispensing against, never part of a ledger entry or its hash chain. Each change is audited
with the old and the new value.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode

from babel.numbers import NumberFormatError, parse_decimal
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from stock import balances, chain
from stock.models import Balance, Item, Lot, User
from stock.quantities import unit_allows
from web import audit, auth, deps, words
from web.access import (ADMINS, Forbidden, NotFound, require_national, require_roles, scope_of, user_in_scope,
                         visible_facilities, visible_facility_ids, visible_users)
from web.templating import gettext, render, wants_fragment

router = APIRouter(prefix="/admin", include_in_schema=False)
admin = require_roles(*ADMINS)

ITEMS_PER_PAGE = 50
MAX_CEILING = Decimal(1_000_000)
MSG_NOT_A_NUMBER = "Enter a number, such as 60, or leave it empty for no ceiling."
MSG_NOT_POSITIVE = "The ceiling must be greater than zero."
MSG_TOO_LARGE = "The ceiling must be under 1,000,000."
MSG_TOO_PRECISE = "Use at most three decimal places."
MSG_WHOLE_UNITS = "This item is counted in whole %(unit)s: enter a whole number."
MSG_SAVED = "Saved."
MSG_UNCHANGED = "Nothing changed."


def _scope_label(user: User, codes: dict[int, str]) -> tuple[str, str]:
    if user.facility_id is not None:
        return "facility", codes.get(user.facility_id, "?")
    if user.region:
        return "region", user.region
    return "national", ""


@router.get("/users")
def users(request: Request, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    """Every user in the admin's scope, with role, scope and whether active."""
    codes = {f.id: f.code for f in visible_facilities(db, user)}
    rows = []
    for u in visible_users(db, user):
        kind, where = _scope_label(u, codes)
        rows.append({"username": u.username, "name": u.display_name or "", "role": u.role, "scope_kind": kind,
                     "scope": where, "active": u.active})
    labels = words.labels(request.state.lang, words.ROLE)
    return render(request, "admin/users.html", {"users": rows, "role_labels": labels})


@router.post("/users/{username}/disable")
def disable_user(request: Request, username: str, user: User = Depends(admin), db: Session = Depends(deps.db)):
    """Disable a user: their logins end at once and their API tokens stop working."""
    target = user_in_scope(db, user, username, for_update=True)
    if target.id == user.id:
        raise Forbidden("you cannot disable yourself", field="username")
    target.active = False
    ended, revoked = auth.end_user_access(db, target.id)
    audit.record(db, request, "user_disabled", "user", username,
                 {"sessions_ended": ended, "tokens_revoked": revoked, "via": "web"}, facility_id=target.facility_id)
    db.commit()
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/facilities")
def facilities(request: Request, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    labels = words.labels(request.state.lang, words.FACILITY_KIND)
    return render(request, "admin/facilities.html", {"facilities": visible_facilities(db, user), "kind_labels": labels,
                                                     "national": scope_of(user).kind == "national"})


@router.get("/ledger")
def ledger(request: Request, user: User = Depends(admin)):
    """The verification page: nothing runs until the button is pressed."""
    return render(request, "admin/ledger.html", {"result": None})


@router.post("/ledger/verify")
def verify(request: Request, user: User = Depends(admin), db: Session = Depends(deps.db)):
    """Re-walk every hash chain and compare balances with the ledger; show the result per facility."""
    report = chain.verify(db)
    drifts = balances.drift(db)
    allowed = {f.code for f in visible_facilities(db, user)}
    per: dict[str, dict] = {code: {"code": code, "breaks": [], "drifts": []} for code in sorted(allowed)}
    for b in report.breaks:
        if b.facility_code in per:
            per[b.facility_code]["breaks"].append(str(b))
    for d in drifts:
        if d.facility_code in per:
            per[d.facility_code]["drifts"].append(str(d))
    rows = list(per.values())
    ok = all(not r["breaks"] and not r["drifts"] for r in rows)
    audit.record(db, request, "ledger_verified", "ledger", None,
                 {"ok": ok, "entries": report.entries, "breaks": len(report.breaks), "drifts": len(drifts)})
    db.commit()
    return render(request, "admin/ledger.html",
                  {"result": {"ok": ok, "entries": report.entries, "facilities": rows}})


# --- items ---------------------------------------------------------------------------------------

def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def item_page(db: Session, user: User, q: str, *, limit: int, offset: int) -> tuple[list[dict], int]:
    """One page of items matching ``q`` (code, name or ATC code, any case), by code, each with its
    number of lots and its stock on hand across the facilities ``user`` may see; and how many match."""
    stmt = select(Item)
    if q:
        pattern = _like(q.lower())
        stmt = stmt.where(or_(func.lower(Item.code).like(pattern, escape="\\"),
                              func.lower(Item.name).like(pattern, escape="\\"),
                              func.lower(Item.atc_code).like(pattern, escape="\\")))
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = list(db.scalars(stmt.order_by(Item.code).limit(limit).offset(offset)))
    ids = [i.id for i in items]
    lots: dict[int, int] = {}
    on_hand: dict[int, Decimal] = {}
    if ids:
        # The untracked lot ('') is where stock without a lot number is kept, not a lot of its own.
        lots = dict(db.execute(select(Lot.item_id, func.count()).where(Lot.item_id.in_(ids), Lot.lot_number != "")
                               .group_by(Lot.item_id)).all())
        # func.sum keeps the column's type, so the total comes back as a quantity (Decimal).
        hand = select(Balance.item_id, func.sum(Balance.on_hand)).where(Balance.item_id.in_(ids))
        if scope_of(user).kind != "national":
            hand = hand.where(Balance.facility_id.in_(visible_facility_ids(db, user)))
        on_hand = {item_id: total or Decimal(0) for item_id, total in db.execute(hand.group_by(Balance.item_id)).all()}
    rows = [{"code": i.code, "name": i.name, "atc_code": i.atc_code or "", "form": i.form or "", "unit": i.unit,
             "controlled": i.controlled, "ceiling": i.max_dispense_quantity, "lots": lots.get(i.id, 0),
             "on_hand": on_hand.get(i.id, Decimal(0))} for i in items]
    return rows, total


@router.get("/items")
def items(request: Request, q: str = Query("", max_length=100), page: int = Query(1, ge=1, le=100000),
          user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    """Every item with its lots and stock on hand, searched as one types (htmx) or by the form."""
    q = q.strip()
    rows, total = item_page(db, user, q, limit=ITEMS_PER_PAGE, offset=(page - 1) * ITEMS_PER_PAGE)
    pages = max(1, -(-total // ITEMS_PER_PAGE))
    ctx = {"rows": rows, "q": q, "page": page, "pages": pages, "total": total,
           "query_string": urlencode({"q": q}) if q else ""}
    response = render(request, "admin/_items_table.html" if wants_fragment(request) else "admin/items.html", ctx)
    response.headers["Vary"] = "HX-Request"
    return response


def _item(db: Session, code: str) -> Item:
    item = db.scalars(select(Item).where(Item.code == code)).first()
    if item is None:
        raise NotFound("no item '%(item)s'", field="code", params={"item": code})
    return item


def parse_ceiling(lang: str, text: str, unit: str) -> tuple[Decimal | None, str | None]:
    """The protocol ceiling typed in a form (empty: none), or the message saying what is wrong.

    A plain number (60, 2.5) is read as such; otherwise as the page's language writes numbers
    (1 234,5 in French), so a pasted, formatted figure is understood too."""
    text = text.strip()
    if not text:
        return None, None
    try:
        value = Decimal(text)
    except InvalidOperation:
        try:
            value = parse_decimal(text, locale=lang, strict=True)
        except NumberFormatError:
            return None, gettext(lang, MSG_NOT_A_NUMBER)
    if not value.is_finite():
        return None, gettext(lang, MSG_NOT_A_NUMBER)
    if value <= 0:
        return None, gettext(lang, MSG_NOT_POSITIVE)
    if value >= MAX_CEILING:
        return None, gettext(lang, MSG_TOO_LARGE)
    if value * 1000 != (value * 1000).to_integral_value():
        return None, gettext(lang, MSG_TOO_PRECISE)
    if not unit_allows(unit, value):
        return None, gettext(lang, MSG_WHOLE_UNITS, unit=words.label(lang, words.UNIT, unit))
    return value, None


def _item_form(request: Request, item: Item, values: dict, *, errors: dict | None = None,
               done: str | None = None, status_code: int = 200):
    can_edit = scope_of(request.state.user).kind == "national"  # the rule of require_national
    return render(request, "admin/item.html", {"item": item, "values": values, "errors": errors or {},
                                               "done": done, "can_edit": can_edit}, status_code=status_code)


@router.get("/items/{code}")
def item_form(request: Request, code: str, user: User = Depends(admin), db: Session = Depends(deps.read_db)):
    item = _item(db, code)
    done = request.query_params.get("done")
    message = {"saved": MSG_SAVED, "unchanged": MSG_UNCHANGED}.get(done or "")
    values = {"max_dispense_quantity": "" if item.max_dispense_quantity is None else str(item.max_dispense_quantity),
              "controlled": item.controlled}
    return _item_form(request, item, values, done=gettext(request.state.lang, message) if message else None)


@router.post("/items/{code}")
def update_item(request: Request, code: str, user: User = Depends(admin), db: Session = Depends(deps.db),
                form: dict[str, str] = Depends(deps.form_fields)):
    """Set an item's protocol ceiling and controlled flag; the change is audited, old and new.
    Items are national master data: only a national admin changes them (checked before any read)."""
    require_national(user, "an item's ceiling or controlled flag")
    item = db.scalars(select(Item).where(Item.code == code).with_for_update()).first()
    if item is None:
        raise NotFound("no item '%(item)s'", field="code", params={"item": code})
    values = {"max_dispense_quantity": str(form.get("max_dispense_quantity") or "")[:50],
              "controlled": form.get("controlled") in ("1", "on", "true")}
    ceiling, error = parse_ceiling(request.state.lang, values["max_dispense_quantity"], item.unit)
    if error:
        return _item_form(request, item, values, errors={"max_dispense_quantity": error}, status_code=422)
    changes = {}
    if ceiling != item.max_dispense_quantity:
        changes["max_dispense_quantity"] = {"old": item.max_dispense_quantity, "new": ceiling}
        item.max_dispense_quantity = ceiling
    if values["controlled"] != item.controlled:
        changes["controlled"] = {"old": item.controlled, "new": values["controlled"]}
        item.controlled = values["controlled"]
    if not changes:
        return RedirectResponse(f"/admin/items/{quote(item.code, safe='')}?done=unchanged", status_code=303)
    audit.record(db, request, "item_updated", "item", item.code, {**changes, "via": "web"})
    db.commit()
    return RedirectResponse(f"/admin/items/{quote(item.code, safe='')}?done=saved", status_code=303)
