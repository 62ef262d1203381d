"""Timeline notes put into words in the reader's language (stock.requisitions.notes stores each
part as a message key and its values)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel import numbers as babel_numbers

from stock.requisitions.notes import decode
from web.templating import gettext

MSG_QUANTITY = "%(item)s: %(before)s → %(after)s"
MSG_QUANTITY_REASON = "%(item)s: %(before)s → %(after)s (%(reason)s)"
MSG_ARRIVAL = "%(item)s lot %(lot)s: %(received)s of %(shipped)s received"
MSG_ARRIVAL_DAMAGED = "%(item)s lot %(lot)s: %(received)s of %(shipped)s received, %(damaged)s damaged"
MSG_WAYBILL = "waybill %(waybill)s"
MSG_SEPARATOR = "; "

_NUMBERS = ("before", "after", "received", "shipped", "damaged")


def _number(lang: str, text: str) -> str:
    try:
        return babel_numbers.format_decimal(Decimal(text), locale=lang)
    except (InvalidOperation, ValueError):
        return text


def note_text(lang: str, note: str | None) -> str | None:
    """``note`` as the reader's language says it; None when there is none."""
    parts = decode(note)
    if not parts:
        return None
    said = []
    for p in parts:
        values = {k: _number(lang, v) if k in _NUMBERS else v for k, v in p.params.items()}
        if p.kind == "quantity":
            said.append(gettext(lang, MSG_QUANTITY_REASON if values.get("reason") else MSG_QUANTITY, **values))
        elif p.kind == "arrival":
            damaged = Decimal(p.params.get("damaged", "0") or "0")
            said.append(gettext(lang, MSG_ARRIVAL_DAMAGED if damaged else MSG_ARRIVAL, **values))
        elif p.kind == "waybill":
            said.append(gettext(lang, MSG_WAYBILL, **values))
        else:
            said.append(values.get("text", ""))
    return gettext(lang, MSG_SEPARATOR).join(said)


__all__ = ["note_text"]
