"""Receipts and transfers entered in packs (30 boxes of 144), stored in base units (4,320
tablets): the pharmacy's receipt and transfer-out forms offer the item's pack sizes, and a scan of
a pack's GTIN names the item and the pack at once (stock.requisitions.packs)."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.models import Item, User
from stock.requisitions.models import PackSize
from web import deps
from web.access import STAFF, facility_in_scope, require_roles
from web.templating import gettext, render

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


MSG_UNKNOWN_PACK = "%(code)s comes in no pack called %(pack)s."
MSG_WHOLE_PACKS = "Enter a whole number of packs."


def packs_of_item(db: Session, item_code: str) -> tuple[Item | None, list[PackSize]]:
    item = db.scalars(select(Item).where(Item.code == (item_code or "").strip())).one_or_none()
    if item is None:
        return None, []
    return item, list(db.scalars(select(PackSize).where(PackSize.item_id == item.id).order_by(PackSize.units)))


def in_base_units(request: Request, db: Session, item: Item | None, quantity: Decimal | None, values: dict,
                  errors: dict) -> Decimal | None:
    """The typed quantity in base units: as typed when no pack is chosen, else packs × units per
    pack (whole packs only). None with the problem in ``errors``."""
    name = (values.get("pack") or "").strip()
    if not name or item is None or quantity is None:
        return quantity
    pack = next((p for p in packs_of_item(db, item.code)[1] if p.name == name), None)
    if pack is None:
        errors["pack"] = gettext(request.state.lang, MSG_UNKNOWN_PACK, code=item.code, pack=name)
        return None
    if quantity != quantity.to_integral_value():
        errors["quantity"] = gettext(request.state.lang, MSG_WHOLE_PACKS)
        return None
    return quantity * pack.units


@router.get("/{facility}/packs")
def packs(request: Request, facility: str, item_code: str = "", pack: str = "",
          user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    """htmx: the pack sizes of the chosen item, for the quantity's unit."""
    facility_in_scope(db, user, facility)
    item, choices = packs_of_item(db, item_code)
    return render(request, "pharmacy/_packs.html", {"item": item, "packs": choices, "value": pack, "error": None})


__all__ = ["router", "in_base_units", "packs_of_item"]
