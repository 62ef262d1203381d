"""Pseudonymous patient ids: a keyed HMAC of the health-card number.

A health-card number is personal data. Wherever a person does not need the number itself (logs,
flags, alerts, audit details, URLs, exports) the patient is named by ``pseudonym(card, key)``:
the same card always gives the same pseudonym under one install's key (``DAWA_PATIENT_ID_KEY``),
so records about one patient can still be put together, while without the key no one can go from
a pseudonym back to a card, not even by trying every possible card number.

The key lives in the environment (or .env), never in the database: a copy of the database alone
does not link pseudonyms to cards. Changing the key changes every pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from stock.errors import DawaError

PREFIX = "P-"
LENGTH = 20
"""Hex digits kept (80 bits): no two of even a billion cards share a pseudonym in practice."""

_PSEUDONYM = re.compile(rf"^{PREFIX}[0-9a-f]{{{LENGTH}}}$")


class NoPatientKey(DawaError):
    """DAWA_PATIENT_ID_KEY is not set."""

    field = "DAWA_PATIENT_ID_KEY"


def pseudonym(health_card_id: str, key: str | None) -> str:
    """The pseudonym of a health card under ``key`` (the same for the card however it is padded)."""
    if not key:
        raise NoPatientKey("DAWA_PATIENT_ID_KEY is not set: run `dawa init` (it writes one to .env) "
                           "or set it in the environment")
    digest = hmac.new(key.encode("utf-8"), b"dawa-health-card:" + health_card_id.strip().encode("utf-8"),
                      hashlib.sha256).hexdigest()
    return PREFIX + digest[:LENGTH]


def patient_key(settings) -> str:
    """The install's patient key: ``patient_id_key`` (``DAWA_PATIENT_ID_KEY``, which `dawa init`
    writes to .env). An install that has only ``secret_key`` gets a key derived from it, so nothing
    is ever pseudonymised under a key shipped with the code; NoPatientKey when neither is set."""
    if settings.patient_id_key:
        return settings.patient_id_key
    if settings.secret_key:
        return hmac.new(settings.secret_key.encode("utf-8"), b"dawa-patient-id-key", hashlib.sha256).hexdigest()
    raise NoPatientKey("DAWA_PATIENT_ID_KEY is not set: run `dawa init` (it writes one to .env) "
                       "or set it in the environment")


def pseudonymise_text(text: str, health_card_ids, key: str | None) -> str:
    """``text`` (a flag's reason, an alert) with each of ``health_card_ids`` replaced by its pseudonym;
    a reason kept as messages (stock.messages) stays one, its parameters pseudonymised."""
    from stock.messages import Message, Reasons, map_codes

    def replaced(value: str) -> str:
        for card in sorted({c for c in health_card_ids if c}, key=len, reverse=True):
            value = value.replace(card, pseudonym(card, key))
        return value

    if isinstance(text, (Message, Reasons)):
        return map_codes(text, replaced)
    return replaced(text)


def pseudonymise_flag(row, key: str | None):
    """A flag row (anything with ``subject``, ``subject_id`` and ``reason``, a dataclass) naming its
    patient by pseudonym, in its subject and its reason; rows about others are returned as they are."""
    import dataclasses

    if row.subject != "patient":
        return row
    changed = {"subject_id": pseudonym(row.subject_id, key),
               "reason": pseudonymise_text(row.reason, [row.subject_id], key)}
    if getattr(row, "messages", None):
        from stock.messages import dump, load, map_codes

        changed["messages"] = dump(map_codes(load(row.messages),
                                             lambda text: pseudonymise_text(text, [row.subject_id], key)))
    return dataclasses.replace(row, **changed)


def is_pseudonym(text: str) -> bool:
    return bool(_PSEUDONYM.match(text))


def maybe_pseudonym(health_card_id: str | None, key: str | None) -> str | None:
    """``pseudonym`` of a card that may be missing (None stays None)."""
    return None if health_card_id is None else pseudonym(health_card_id, key)


__all__ = ["pseudonym", "maybe_pseudonym", "pseudonymise_text", "pseudonymise_flag", "patient_key", "is_pseudonym", "NoPatientKey", "PREFIX"]
