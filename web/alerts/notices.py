"""In-app notifications as their reader sees them: rendered from their messages in the language
the reader has now, not the one they had when the alert was raised."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from web.alerts.messages import Composed
from web.alerts.models import Notification


@dataclass(frozen=True)
class Shown:
    id: int
    created_at: datetime
    title: Markup
    lines: list[Markup]
    link: str | None


def shown(note: Notification, lang: str | None) -> Shown:
    """``note`` in ``lang``: HTML with codes and names in ``<bdi>``; a notification kept before
    alerts were messages shows its stored text."""
    if note.messages:
        title, lines = Composed.from_json(note.messages).html_parts(lang or "en")
    else:
        title, lines = escape(note.title), [escape(part) for part in note.body.split("\n")]
    return Shown(note.id, note.created_at, title, lines, note.link)
