"""Which item a FHIR medicine names: by a coding in Dawa's item system, by a GTIN coding (any
pack's barcode, ``stock.gs1`` rules), or by its ATC code, narrowed by the Medication's dose form
and strength when several items share the code. Used by ``web.interop.fhir_import``."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import gs1
from stock.errors import InvalidEntry
from stock.models import Item as ItemRow
from stock.settings import Fhir
from web.interop.fhir_codes import ATC_SYSTEM, GTIN_SYSTEMS


class Bad(Exception):
    """A problem at ``path`` of the resource being read."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    unit: str
    atc: str | None
    form: str | None
    gtin: str | None


class Catalog:
    """The items, looked up by code, GTIN or ATC code."""

    def __init__(self, session: Session):
        rows = session.execute(select(ItemRow.code, ItemRow.name, ItemRow.unit, ItemRow.atc_code, ItemRow.form, ItemRow.gtin)).all()
        self.by_code = {r[0]: Item(*r) for r in rows}
        self.by_gtin = {i.gtin: i for i in self.by_code.values() if i.gtin}
        self.by_atc: dict[str, list[Item]] = {}
        for i in self.by_code.values():
            if i.atc:
                self.by_atc.setdefault(i.atc.upper(), []).append(i)


def _codings(concept, path: str) -> list[dict]:
    if not isinstance(concept, dict):
        raise Bad(path, "must be a CodeableConcept")
    return [c for c in concept.get("coding") or [] if isinstance(c, dict) and c.get("code")]


def item_of(concept, med: dict | None, sys: Fhir, path: str, catalog: Catalog) -> Item:
    """The item a CodeableConcept names: by Dawa code, by GTIN, or by ATC code (narrowed by the
    Medication's dose form and strength when several items share it)."""
    codings = _codings(concept, path)
    for c in codings:
        if c.get("system") == sys.item_system:
            code = str(c["code"])
            if code not in catalog.by_code:
                raise Bad(f"{path}.coding", f"unknown item {code!r}")
            return catalog.by_code[code]
    for c in codings:
        if c.get("system") in GTIN_SYSTEMS:
            try:
                gtin = gs1.normalize_gtin(str(c["code"]))
            except InvalidEntry as exc:
                raise Bad(f"{path}.coding", exc.message) from None
            if gtin not in catalog.by_gtin:
                raise Bad(f"{path}.coding", f"no item has the GTIN {gtin}")
            return catalog.by_gtin[gtin]
    for c in codings:
        if c.get("system") == ATC_SYSTEM:
            return _by_atc(str(c["code"]).upper(), med, path, catalog)
    raise Bad(f"{path}.coding", f"no coding names the item: give its code (system {sys.item_system}), "
                                 f"its GTIN (system {GTIN_SYSTEMS[0]}) or its ATC code (system {ATC_SYSTEM})")


def _words(value) -> str:
    if isinstance(value, dict):
        texts = [value.get("text")] + [c.get("display") or c.get("code") for c in value.get("coding") or []
                                       if isinstance(c, dict)]
        return " ".join(str(t) for t in texts if t).lower()
    return ""


def _strengths(med: dict) -> list[str]:
    """Each ingredient's strength as ``500 mg`` (R4 ``strength``, R5 ``strengthRatio``)."""
    out = []
    for ing in med.get("ingredient") or []:
        if not isinstance(ing, dict):
            continue
        ratio = ing.get("strength") or ing.get("strengthRatio") or {}
        num = ratio.get("numerator") if isinstance(ratio, dict) else None
        if isinstance(num, dict) and num.get("value") is not None:
            value = Decimal(str(num["value"])).normalize()
            out.append(f"{value:f} {num.get('unit') or num.get('code') or ''}".strip().lower())
    return out


def _by_atc(atc: str, med: dict | None, path: str, catalog: Catalog) -> Item:
    candidates = catalog.by_atc.get(atc, [])
    if not candidates:
        raise Bad(f"{path}.coding", f"no item has the ATC code {atc}")
    if len(candidates) > 1 and med is not None:
        form = _words(med.get("form") or med.get("doseForm"))
        if form:
            candidates = [i for i in candidates if i.form and i.form.lower() in form] or candidates
        strengths = _strengths(med)
        if strengths:
            def named(i: Item) -> bool:
                name = i.name.lower().replace(" ", "")
                return any(s.replace(" ", "") in name for s in strengths)
            candidates = [i for i in candidates if named(i)] or candidates
    if len(candidates) > 1:
        raise Bad(f"{path}.coding", f"ATC code {atc} is {len(candidates)} items "
                                     f"({', '.join(sorted(i.code for i in candidates))}); name the dose form and "
                                     "strength in the Medication, or the item's code or GTIN")
    return candidates[0]


__all__ = ["Bad", "Catalog", "Item", "item_of"]
