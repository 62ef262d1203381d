"""Pack sizes: an item is counted in its base unit and comes in packs (a box of 144 tablets), each
with the GTIN printed on it where it has one.

Quantities entered in packs are stored in base units (packs × units per pack); nothing stores a
pack count. A pack's GTIN names the item and the pack at once, so a scan fills both. An item's own
GTIN (stock.models.Item.gtin) is its base unit's: a pack may not reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.gs1 import normalize_gtin, parse_scan
from stock.masterdata import item_by_code
from stock.models import Item
from stock.quantities import unit_allows
from stock.requisitions.models import PackSize


def add_pack(session: Session, item_code: str, units: Decimal, name: str, gtin: str | None = None) -> PackSize:
    item = item_by_code(session, item_code)
    if units <= 0 or not unit_allows(item.unit, units):
        raise InvalidEntry(f"a pack holds a positive number of {item.unit}", field="units")
    if not (name or "").strip():
        raise InvalidEntry("a pack needs a name, such as 'box of 144'", field="name")
    code = normalize_gtin(gtin) if gtin else None
    if code and (session.scalar(select(Item.id).where(Item.gtin == code))
                 or session.scalar(select(PackSize.id).where(PackSize.gtin == code))):
        raise InvalidEntry(f"GTIN {code} already names an item or a pack", field="gtin")
    if session.scalar(select(PackSize.id).where(PackSize.item_id == item.id, PackSize.units == units)):
        raise InvalidEntry(f"{item.code} already has a pack of {units} {item.unit}", field="units")
    pack = PackSize(item_id=item.id, units=units, name=name.strip(), gtin=code)
    session.add(pack)
    session.flush()
    return pack


def packs_of(session: Session, item_ids: list[int]) -> dict[int, list[PackSize]]:
    out: dict[int, list[PackSize]] = {i: [] for i in item_ids}
    for pack in session.scalars(select(PackSize).where(PackSize.item_id.in_(item_ids)).order_by(PackSize.units)):
        out[pack.item_id].append(pack)
    return out


@dataclass(frozen=True)
class Scanned:
    item: Item
    pack: PackSize | None
    """None when the GTIN is the item's own (its base unit)."""


def pack_with_gtin(session: Session, gtin: str) -> tuple[Item, PackSize] | None:
    """The item and pack whose GTIN (already normalised) is ``gtin``, or None."""
    row = session.execute(select(Item, PackSize).join(PackSize, PackSize.item_id == Item.id)
                          .where(PackSize.gtin == gtin)).first()
    return (row[0], row[1]) if row is not None else None


def scanned(session: Session, text: str) -> Scanned | None:
    """The item and pack a scanned barcode names, or None if no item or pack has its GTIN.
    Raises BadScan for a barcode that cannot be read."""
    gtin = parse_scan(text).gtin
    found = pack_with_gtin(session, gtin)
    if found is not None:
        return Scanned(*found)
    item = session.scalars(select(Item).where(Item.gtin == gtin)).one_or_none()
    return Scanned(item, None) if item is not None else None


def in_base_units(session: Session, item: Item, quantity: Decimal, pack: str | None) -> Decimal:
    """``quantity`` of ``pack`` (its GTIN or its name; empty: the base unit) in base units."""
    if not pack or not pack.strip():
        return quantity
    pack = pack.strip()
    for p in session.scalars(select(PackSize).where(PackSize.item_id == item.id)):
        if pack in (p.name, p.gtin) or (pack.isdigit() and p.gtin == pack.zfill(14)):
            return quantity * p.units
    raise InvalidEntry(f"{item.code} has no pack {pack!r}", field="pack")


__all__ = ["add_pack", "pack_with_gtin", "packs_of", "scanned", "Scanned", "in_base_units"]
