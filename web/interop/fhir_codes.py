"""Code systems Dawa exchanges in FHIR, and the checks on their codes.

- GTIN (GS1): ``https://www.gs1.org/gtin``, the URI FHIR's terminology registers for GS1 GTINs;
  the code is the pack's 14-digit GTIN (``stock.gs1`` checks it).
- ATC (WHO): ``http://www.whocc.no/atc``; an item's ATC code is exported only when it is a real ATC
  code of one of the five levels (``N``, ``N02``, ``N02B``, ``N02BE``, ``N02BE01``).
- UCUM: ``http://unitsofmeasure.org``. A Dawa base unit is a UCUM unit when it is one (``ml`` is
  ``mL``, ``g``, ``mg``, ``l`` is ``L``, ``unit`` is ``[iU]``), otherwise a count of things, which
  UCUM writes as an annotation of unity: ``{tablet}``. An annotation means nothing to UCUM (``{tbl}``
  equals ``1``) to a machine, but a person writes ``{box}`` to mean boxes: a counted item accepts
  ``1`` and an annotation naming its unit (singular or plural, or a common abbreviation such as
  ``{tbl}``), and a quantity in a measure (``mL``) only for an item counted in that measure: Dawa
  never converts between units.
"""

from __future__ import annotations

import re
from functools import lru_cache

ATC_SYSTEM = "http://www.whocc.no/atc"
GTIN_SYSTEM = "https://www.gs1.org/gtin"
GTIN_SYSTEMS = (GTIN_SYSTEM, "urn:oid:1.3.160", "http://gs1.org/gtin")
"""Spellings other systems use for the GTIN code system; the first is the one Dawa writes."""
UCUM = "http://unitsofmeasure.org"
ATC_CODE = re.compile(r"[A-Z](?:\d{2}(?:[A-Z](?:[A-Z](?:\d{2})?)?)?)?")

_ABBREVIATIONS = {"tbl": "tablet", "tab": "tablet", "cap": "capsule", "caps": "capsule", "amp": "ampoule",
                  "pc": "piece", "pcs": "piece", "supp": "suppository"}
_UCUM_MEASURES = {"ml": "mL", "l": "L", "g": "g", "mg": "mg", "mcg": "ug", "ug": "ug", "kg": "kg",
                  "unit": "[iU]", "iu": "[iU]"}


@lru_cache(maxsize=4096)
def is_atc(code: str | None) -> bool:
    return bool(code) and ATC_CODE.fullmatch(code) is not None


@lru_cache(maxsize=1024)
def ucum_code(unit: str) -> str:
    """The UCUM code of a Dawa base unit: a measure's own code, or an annotation of a count."""
    key = unit.strip().lower()
    if key in _UCUM_MEASURES:
        return _UCUM_MEASURES[key]
    return "{" + re.sub(r"[{}]", "", unit.strip()) + "}"


def _singular(text: str) -> str:
    text = text.strip().lower()
    for ending, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if text.endswith(ending) and len(text) > len(ending) + 2:
            stem = text[: -len(ending)] + repl
            return stem
    return text


def _names(annotation: str, base_unit: str) -> bool:
    """Whether a UCUM annotation such as ``{tablets}`` or ``{tbl}`` names the base unit."""
    if not (annotation.startswith("{") and annotation.endswith("}")):
        return False
    word = _singular(annotation[1:-1])
    return _ABBREVIATIONS.get(word, word) == _singular(base_unit)


def unit_problem(base_unit: str, *, unit: str | None, system: str | None, code: str | None) -> tuple[str, str] | None:
    """(path, message) when a FHIR Quantity's unit is not the item's base unit, else None.
    The UCUM code decides when there is one; otherwise the unit's text, singular or plural."""
    if system == UCUM and code:
        mine = ucum_code(base_unit)
        counted = mine.startswith("{")
        if code == mine or (counted and (code == "1" or _names(code, base_unit))):
            return None
        return ("quantity.code", f"UCUM {code!r} is not the base unit of this item ({mine!r}, {base_unit!r}); "
                                 "quantities are counted in base units and are not converted")
    if system and code:
        return ("quantity.system", f"units are read by their UCUM code (system {UCUM}), not {system!r}")
    if unit and unit.strip().lower() != base_unit.lower() and _singular(unit) not in (base_unit.lower(),
                                                                                       _singular(base_unit)):
        return ("quantity.unit", f"{unit!r} is not the base unit of this item ({base_unit!r}); "
                                 "quantities are counted in base units")
    return None


__all__ = ["ATC_SYSTEM", "GTIN_SYSTEM", "GTIN_SYSTEMS", "UCUM", "is_atc", "ucum_code", "unit_problem"]
