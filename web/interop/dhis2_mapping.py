"""The mapping of Dawa's facilities, items and measures to a ministry's DHIS2 metadata.

A mapping file names, for each facility, its org unit and, for each item, the data element (and
category option combo) of each measure it sends, e.g.::

    {
      "idScheme": "CODE",                              (optional: UID, the default, or CODE)
      "dataSet": "LMIS_MONTHLY",                       (optional)
      "attributeOptionCombo": "HllvX50cXC0",           (optional)
      "orgUnits": {"TRP-H01": "OU_TRP_H01"},
      "items": {
        "PCM500T": {
          "stock_on_hand": {"dataElement": "LMIS_PCM_SOH", "categoryOptionCombo": "default"},
          "consumption": "LMIS_PCM_CONS",
          "stockout_days": "LMIS_PCM_SOD",
          "received": "LMIS_PCM_REC"
        }
      }
    }

Identifiers are DHIS2 uids (a letter then 10 letters or digits) or codes, as ``idScheme`` says;
``dataElementIdScheme``, ``orgUnitIdScheme`` and ``categoryOptionComboIdScheme`` override it per
kind, exactly as DHIS2's import parameters of the same names, which the payload and the push carry.

Measures: ``stock_on_hand``, ``consumption`` and ``stockout_days`` come from the ledger and from
monthly reports; ``opening``, ``received``, ``adjustment`` and ``ordered`` from monthly reports
(``web.interop.dhis2`` says which source wins). Two measures sent to the same data element and
category option combo would overwrite each other in DHIS2: the mapping is kept, and each such
collision is a warning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from stock.errors import DawaError

MEASURES = ("stock_on_hand", "consumption", "stockout_days", "opening", "received", "adjustment", "ordered")
SCHEMES = ("UID", "CODE")
SCHEME_KEYS = ("idScheme", "dataElementIdScheme", "orgUnitIdScheme", "categoryOptionComboIdScheme")
MAPPING_KEYS = ("dataSet", "attributeOptionCombo", "orgUnits", "items", *SCHEME_KEYS)
UID = re.compile(r"[A-Za-z][A-Za-z0-9]{10}")
CODE_MAX = 50
"""DHIS2 codes are at most 50 characters."""


class MappingError(DawaError):
    """The mapping file is malformed; every problem names the file, the key path and what is wrong."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__(f"{len(problems)} problem(s) in mapping {source}:\n" +
                         "\n".join(f"{source}: {p}" for p in problems))
        self.problems = [f"{source}: {p}" for p in problems]


@dataclass(frozen=True)
class Target:
    data_element: str
    category_option_combo: str | None = None


@dataclass
class Mapping:
    org_units: dict[str, str]
    items: dict[str, dict[str, Target]]
    data_set: str | None = None
    attribute_option_combo: str | None = None
    schemes: dict[str, str] = field(default_factory=dict)
    """The id schemes that are not UID, by DHIS2's parameter name."""

    def collisions(self) -> list[str]:
        """Each data element and option combo that two item measures would both be sent to."""
        seen: dict[tuple[str, str | None], str] = {}
        out = []
        for code in sorted(self.items):
            for measure in MEASURES:
                target = self.items[code].get(measure)
                if target is None:
                    continue
                key = (target.data_element, target.category_option_combo)
                where = f"{code}.{measure}"
                if key in seen:
                    combo = f", category option combo {key[1]}" if key[1] else ""
                    out.append(f"{seen[key]} and {where} are both mapped to data element {key[0]}{combo}: "
                               "DHIS2 keeps one value per org unit and period, so one overwrites the other")
                else:
                    seen[key] = where
        return out


def _scheme(data: dict, key: str, problems: list[str], default: str = "UID") -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or value.upper() not in SCHEMES:
        problems.append(f"{key}: {value!r} is not an id scheme (expected {' or '.join(SCHEMES)})")
        return default
    return value.upper()


def _identifier(value, scheme: str, path: str, problems: list[str]) -> str | None:
    if scheme == "UID":
        if not isinstance(value, str) or not UID.fullmatch(value):
            problems.append(f"{path}: {value!r} is not a DHIS2 uid (a letter then 10 letters or digits); "
                            "for codes set \"idScheme\": \"CODE\"")
            return None
        return value
    if not isinstance(value, str) or not value.strip() or len(value) > CODE_MAX or not value.isprintable():
        problems.append(f"{path}: {value!r} is not a DHIS2 code (1 to {CODE_MAX} printable characters)")
        return None
    return value


def parse_mapping(data, source: str = "mapping") -> Mapping:
    """Check a mapping (already loaded from JSON) and return it; MappingError lists every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise MappingError(source, ["(top): must be a JSON object"])
    for key in data:
        if key not in MAPPING_KEYS:
            problems.append(f"{key}: unknown key (expected {', '.join(MAPPING_KEYS)})")
    general = _scheme(data, "idScheme", problems)
    de_scheme = _scheme(data, "dataElementIdScheme", problems, general)
    ou_scheme = _scheme(data, "orgUnitIdScheme", problems, general)
    coc_scheme = _scheme(data, "categoryOptionComboIdScheme", problems, general)
    schemes = {k: v for k, v in zip(SCHEME_KEYS, (general, de_scheme, ou_scheme, coc_scheme)) if v != "UID"}
    data_set = _identifier(data["dataSet"], general, "dataSet", problems) if data.get("dataSet") is not None else None
    aoc = (_identifier(data["attributeOptionCombo"], coc_scheme, "attributeOptionCombo", problems)
           if data.get("attributeOptionCombo") is not None else None)
    org_units: dict[str, str] = {}
    raw_units = data.get("orgUnits")
    if not isinstance(raw_units, dict):
        problems.append("orgUnits: required, an object of facility code to org unit")
        raw_units = {}
    for code, ident in raw_units.items():
        if (u := _identifier(ident, ou_scheme, f"orgUnits.{code}", problems)) is not None:
            org_units[code] = u
    items: dict[str, dict[str, Target]] = {}
    raw_items = data.get("items")
    if not isinstance(raw_items, dict):
        problems.append("items: required, an object of item code to its data elements")
        raw_items = {}
    for code, measures in raw_items.items():
        if not isinstance(measures, dict):
            problems.append(f"items.{code}: must be an object of measures ({', '.join(MEASURES)})")
            continue
        targets: dict[str, Target] = {}
        for measure, spec in measures.items():
            path = f"items.{code}.{measure}"
            if measure not in MEASURES:
                problems.append(f"{path}: unknown measure (expected {', '.join(MEASURES)})")
                continue
            if isinstance(spec, str):
                if (u := _identifier(spec, de_scheme, path, problems)) is not None:
                    targets[measure] = Target(u)
            elif isinstance(spec, dict):
                extra = set(spec) - {"dataElement", "categoryOptionCombo"}
                if extra:
                    problems.append(f"{path}: unknown key(s) {', '.join(sorted(extra))}")
                de = _identifier(spec.get("dataElement"), de_scheme, f"{path}.dataElement", problems)
                coc = (_identifier(spec["categoryOptionCombo"], coc_scheme, f"{path}.categoryOptionCombo", problems)
                       if spec.get("categoryOptionCombo") is not None else None)
                if de is not None:
                    targets[measure] = Target(de, coc)
            else:
                problems.append(f"{path}: must be a data element or an object with dataElement")
        items[code] = targets
    if problems:
        raise MappingError(source, problems)
    return Mapping(org_units, items, data_set, aoc, schemes)


def load_mapping(path: Path) -> Mapping:
    """Read a JSON mapping file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(str(path), [f"(file): cannot read: {exc.strerror or exc}"]) from exc
    except ValueError as exc:
        raise MappingError(str(path), [f"(json): not valid JSON: {exc}"]) from exc
    return parse_mapping(data, str(path))


__all__ = ["Mapping", "Target", "MappingError", "parse_mapping", "load_mapping", "MEASURES", "SCHEME_KEYS"]
