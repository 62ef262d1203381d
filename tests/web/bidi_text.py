"""Finding English left in a French or Arabic text: what is not a name or a code.

Codes, names and numbers a message carries are isolated (Unicode FSI...PDI in text, ``<bdi>`` in
HTML); what is left outside them is the message's own words, which must be the reader's."""

from __future__ import annotations

import re

FSI, PDI = "\u2068", "\u2069"
_ISOLATED = re.compile(f"{FSI}[^{PDI}]*{PDI}")
_BDI = re.compile(r"<bdi>.*?</bdi>", re.S)
_TAGS = re.compile(r"<[^>]+>")
_URLS = re.compile(r"https?://\S+")
_LATIN = re.compile(r"[A-Za-z]{2,}")

ARABIC_ALLOWED = {"GTIN"}
"""Latin letters an Arabic text may hold outside its isolates: the standard's own name."""

ENGLISH_ONLY = {
    "the", "of", "and", "at", "by", "with", "from", "was", "were", "which", "when", "where", "days", "day",
    "expires", "expired", "hand", "new", "alerts", "alert", "flag", "raised", "stockout", "short", "book",
    "found", "dispensed", "dispensing", "dispensings", "prescription", "without", "user", "against",
    "weekly", "digest", "since", "run", "broken", "chain", "held", "entry", "recorded", "months", "month",
    "low", "high", "medium", "open", "pieces", "tablets", "capsules", "times", "twice", "more", "see",
    "them", "all", "its", "their", "over", "ceiling", "unusual", "count", "written", "off",
}
"""English words a French text never needs (the words both languages share are left out)."""


def outside_isolates(text: str) -> str:
    return _TAGS.sub(" ", _BDI.sub(" ", _ISOLATED.sub(" ", _URLS.sub(" ", text))))


def english_left(text: str, lang: str) -> list[str]:
    """English words in ``text`` (French or Arabic) that are not inside an isolate."""
    words = _LATIN.findall(outside_isolates(text))
    if lang == "ar":
        return [w for w in words if w not in ARABIC_ALLOWED]
    return [w for w in words if w.lower() in ENGLISH_ONLY]
