"""Health cards in clear out of Dawa, on the command line: only when asked for by name, only for a
user web.access lets do it, and each time recorded in the audit trail.

Exports name patients by pseudonym (stock.pseudonyms). Two cases need the cards themselves: a
case handed to investigators, and a copy of the whole database meant to import back to the same
hash chains. `dawa flags export` and `dawa export dataset` take ``--clear-cards --by USER`` for them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import DawaError
from stock.models import User
from web import audit
from web.access import clear_card_export_refusal


class ClearCardsRefused(DawaError):
    field = "by"


def clear_card_exporter(session: Session, username: str | None) -> User:
    """The user who asks for health cards in clear, if web.access lets them; ClearCardsRefused if not."""
    if not username:
        raise ClearCardsRefused("--clear-cards needs --by USER: the national auditor or admin taking the cards out")
    user = session.scalars(select(User).where(User.username == username.strip())).first()
    refusal = clear_card_export_refusal(user)
    if refusal is not None:
        raise ClearCardsRefused(f"--by {username}: {refusal}")
    return user


def record_clear_export(session: Session, user: User, what: str, *, rows: int, patients: int | None = None) -> None:
    """The audit record of an export with health cards in clear; committed here, before the file is
    written, so that no clear export goes unrecorded."""
    detail = {"rows": rows, "via": "cli", "clear_cards": True}
    if patients is not None:
        detail["patients"] = patients
    audit.record(session, None, "clear_cards_exported", "export", what, detail, user=user)
    session.commit()


__all__ = ["ClearCardsRefused", "clear_card_exporter", "record_clear_export"]
