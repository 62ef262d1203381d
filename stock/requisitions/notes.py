"""Timeline notes as what happened, not as a sentence: each part is a message key and its
parameters, stored as JSON in ``RequisitionEvent.note``, and put into words when read, in the
reader's language (web.replenishment.notes).

Parts:
- ``quantity``: a line's quantity changed (item, before, after, and the reason given, if any);
- ``arrival``: a shipped lot arrived short or damaged (item, lot, received, shipped, damaged);
- ``waybill``: the waybill a shipment travels under;
- ``text``: a person's own words (the reason for a rejection), shown as written.

A note written before notes had keys is plain text, and is read back as one ``text`` part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

KINDS = ("quantity", "arrival", "waybill", "text")


@dataclass(frozen=True)
class Part:
    kind: str
    params: dict[str, str] = field(default_factory=dict)


def part(kind: str, **params) -> Part:
    if kind not in KINDS:
        raise ValueError(f"unknown note part {kind!r}")
    return Part(kind, {k: str(v) for k, v in params.items() if v is not None})


def encode(parts: list[Part]) -> str | None:
    """The stored form of ``parts``; None when there is nothing to say."""
    if not parts:
        return None
    return json.dumps([{"m": p.kind, **p.params} for p in parts], ensure_ascii=False, separators=(",", ":"))


def decode(note: str | None) -> list[Part]:
    if not note:
        return []
    if note.startswith("[{"):
        try:
            rows = json.loads(note)
        except ValueError:
            rows = None
        if isinstance(rows, list) and all(isinstance(r, dict) and r.get("m") in KINDS for r in rows):
            return [Part(r["m"], {k: str(v) for k, v in r.items() if k != "m"}) for r in rows]
    return [Part("text", {"text": note})]


__all__ = ["Part", "part", "encode", "decode", "KINDS"]
