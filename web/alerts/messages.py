"""What alerts say: a title and body per kind, as catalog messages (stock.messages) in web/locale.

An alert is composed once, as message keys with typed parameters (:class:`Composed`), and kept so;
it is rendered in a language when it is read (the in-app notification, in the reader's language
of the moment) or sent (e-mail and webhook, in the recipient's). Numbers, dates and units are
written for the language; codes, names and ids are isolated for bidirectional text (Unicode
isolates in text, ``<bdi>`` in HTML). A flag's reason is its detectors' own messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from html import escape

from markupsafe import Markup

from stock.messages import Message as Msg
from stock.messages import code, count, day, join, load, msg, nmsg, num, pmsg, qty
from stock.models import LANGUAGES
from web import messages as rendering


def severity_word(severity: str) -> Msg:
    words = {"low": lambda: pmsg("severity", "low"), "medium": lambda: pmsg("severity", "medium"),
             "high": lambda: pmsg("severity", "high")}
    return words[severity]() if severity in words else Msg("%(severity)s", {"severity": code(severity)})


def _number(value) -> float | None:
    if value is None or value == "-":
        return None
    try:
        return float(Decimal(str(value).replace(",", "")))
    except InvalidOperation:
        return None


def _day(value):
    return day(date.fromisoformat(str(value)[:10]))


def _flag(p: dict) -> tuple[Msg, list]:
    # A flag raised before reasons were kept as messages gives its text, shown as it was written.
    reason = load(p.get("messages")) or [Msg("%(reason)s", {"reason": code(p.get("reason", ""))})]
    return (msg("New %(severity)s flag at %(facility)s", severity=severity_word(p["severity"]),
                facility=code(p["facility"])),
            [reason, [msg("Score %(score)s. Flag %(flag_id)s, raised by %(detectors)s.",
                          score=num(_number(p["score"]), 2), flag_id=code(p["flag_id"]),
                          detectors=join(str(p["detectors"]).split(","), ","))]])


def _stock(kind: str, p: dict) -> tuple[Msg, list]:
    item, facility = code(p["item"]), code(p["facility"])
    names = {"item_name": code(p["item_name"]), "facility_name": code(p["facility_name"])}
    if kind == "stockout":
        return (msg("Stockout: %(item)s at %(facility)s", item=item, facility=facility),
                [[msg("%(item_name)s (%(item)s) is out of stock at %(facility_name)s (%(facility)s).", item=item,
                      facility=facility, **names)]])
    unit = p.get("unit", "")
    months = _number(p.get("months"))
    months_text = (nmsg("%(n)s month", "%(n)s months", n=num(months)) if months is not None
                   else msg("unknown months"))
    return (msg("Low stock: %(item)s at %(facility)s", item=item, facility=facility),
            [[msg("%(item_name)s at %(facility_name)s: %(on_hand)s on hand, %(months)s of stock at an average "
                  "use of %(amc)s a month.", on_hand=qty(_number(p["on_hand"]), unit), months=months_text,
                  amc=qty(_number(p["amc"]), unit), **names)]])


def _lot(kind: str, p: dict) -> tuple[Msg, list]:
    fields = {"lot": code(p["lot"]), "item": code(p["item"]), "facility": code(p["facility"])}
    names = {"lot": code(p["lot"]), "item_name": code(p["item_name"]), "facility_name": code(p["facility_name"]),
             "expiry": _day(p["expiry"]), "on_hand": qty(_number(p["on_hand"]), p.get("unit", ""))}
    if kind == "expiring":
        return (nmsg("Lot %(lot)s of %(item)s expires within %(n)s day at %(facility)s",
                     "Lot %(lot)s of %(item)s expires within %(n)s days at %(facility)s",
                     n=count(int(p["days"])), **fields),
                [[msg("Lot %(lot)s of %(item_name)s at %(facility_name)s expires on %(expiry)s: %(on_hand)s on "
                      "hand.", **names)]])
    return (msg("Lot %(lot)s of %(item)s expired on %(expiry)s at %(facility)s", expiry=_day(p["expiry"]),
                **fields),
            [[msg("Lot %(lot)s of %(item_name)s at %(facility_name)s expired on %(expiry)s: %(on_hand)s still on "
                  "hand, to be written off.", **names)]])


def _count_short(p: dict) -> tuple[Msg, list]:
    unit = p.get("unit", "")
    return (msg("Count short of book: %(item)s at %(facility)s", item=code(p["item"]), facility=code(p["facility"])),
            [[msg("A count on %(date)s at %(facility_name)s found %(counted)s of %(item_name)s where the book said "
                  "%(book)s: %(short)s short. Entry %(entry_id)s, recorded by %(recorded_by)s.",
                  date=_day(p["date"]), facility_name=code(p["facility_name"]),
                  counted=qty(_number(p["counted"]), unit), item_name=code(p["item_name"]),
                  book=num(_number(p["book"])), short=qty(_number(p["short"]), unit), entry_id=code(p["entry_id"]),
                  recorded_by=code(p["recorded_by"]))]])


def _ledger(kind: str, p: dict) -> tuple[Msg, list]:
    problem = code(p.get("problem", ""))
    if kind == "chain_broken":
        return (msg("Ledger hash chain broken at %(facility)s", facility=code(p["facility"])),
                [[msg("Verification of the ledger found: %(problem)s. Entries may have been altered, deleted or "
                      "inserted outside the application.", problem=problem)]])
    if kind == "audit_broken":
        return (msg("Audit trail hash chain broken"),
                [[msg("Verification of the audit trail found: %(problem)s. Records may have been altered, deleted "
                      "or inserted outside the application.", problem=problem)]])
    if kind == "drift":
        return (msg("Stock balance differs from the ledger at %(facility)s", facility=code(p["facility"])),
                [[msg("%(problem)s. Balances were changed outside the ledger's write path.", problem=problem)]])
    signed = code(p["signed_at"])
    return (msg("Signed ledger and audit chain heads, %(signed_at)s", signed_at=signed),
            [[msg("Keep this message: the signed heads below prove, to anyone with Dawa's public key, what the "
                  "ledger and the audit trail held at %(signed_at)s (%(file)s). %(command)s a copy of them shows "
                  "any later rewrite.", signed_at=signed, file=code(p["file"]),
                  command=code("dawa ledger verify --against"))], [], [Msg("%(heads)s", {"heads": code(p["heads"])})]])


def compose(kind: str, params: dict) -> "Composed":
    """The title and body lines of an alert of ``kind`` from its parameters."""
    if kind == "flag":
        title, body = _flag(params)
    elif kind in ("stockout", "low_stock"):
        title, body = _stock(kind, params)
    elif kind in ("expiring", "expired"):
        title, body = _lot(kind, params)
    elif kind == "count_short":
        title, body = _count_short(params)
    elif kind in ("chain_broken", "audit_broken", "drift", "heads_witnessed"):
        title, body = _ledger(kind, params)
    else:
        raise ValueError(f"no message for alerts of kind {kind!r}")
    return Composed(title, body)


@dataclass(frozen=True)
class Composed:
    """An alert as messages: a title and lines (each a list of messages read one after another;
    an empty line separates paragraphs)."""

    title: Msg
    body: list

    def to_json(self) -> dict:
        return {"title": self.title.to_json(), "body": [[m.to_json() for m in line] for line in self.body]}

    @classmethod
    def from_json(cls, data: dict) -> "Composed":
        return cls(Msg.from_json(data["title"]), [load(line) for line in data["body"]])

    def render(self, language: str) -> "Message":
        language = language if language in LANGUAGES else "en"
        body = "\n".join(rendering.render(line, language) if line else "" for line in self.body)
        return Message(language, rendering.render(self.title, language), body, self)

    def html_parts(self, language: str) -> tuple[Markup, list[Markup]]:
        """The title and the lines as HTML (codes in ``<bdi>``)."""
        return (rendering.render(self.title, language, html=True),
                [rendering.render(line, language, html=True) if line else Markup("") for line in self.body])


def open_link(language: str) -> str:
    return rendering.render(msg("Open in Dawa"), language)


@dataclass(frozen=True)
class Message:
    """An alert rendered in one language: what channels send and notifications show."""

    language: str
    title: str
    body: str
    composed: Composed | None = None

    def html(self, link: str | None = None) -> str:
        direction = "rtl" if self.language == "ar" else "ltr"
        if self.composed is not None:
            title, lines = self.composed.html_parts(self.language)
            paragraphs = "".join(f"<p>{p}</p>" for p in Markup("\n").join(lines).split("\n\n"))
            paragraphs = paragraphs.replace("\n", "<br>")
        else:
            title = escape(self.title)
            paragraphs = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in self.body.split("\n\n"))
        anchor = (f'<p><a href="{escape(link, quote=True)}">{escape(open_link(self.language))}</a></p>'
                  if link else "")
        return (f'<!doctype html><html lang="{self.language}" dir="{direction}"><head><meta charset="utf-8">'
                f"<title>{escape(self.title)}</title></head><body><h1>{title}</h1>"
                f"{paragraphs}{anchor}</body></html>")

    def text(self, link: str | None = None) -> str:
        return self.body + (f"\n\n{open_link(self.language)}: {link}" if link else "") + "\n"


def render(kind: str, language: str, params: dict) -> Message:
    """The alert of ``kind`` in ``language`` (English for a language not offered)."""
    return compose(kind, params).render(language)


def stored(language: str, title: str, body: str, composed: dict | None) -> Message:
    """A kept alert in ``language``: rendered again from its messages, or, for one kept before
    alerts were messages, its text as it was written."""
    if composed:
        return Composed.from_json(composed).render(language)
    return Message(language, title, body)


# --- several alerts in one message ---------------------------------------------------------------

def line(severity: str, title, first: list | None, link: str | None) -> list:
    """One alert in a list of several: severity, title, the first line of what it says, link."""
    title = title if isinstance(title, Msg) else code(title)
    what = join(first or [], " ")
    word = severity_word(severity)
    if first and link:
        return [msg("- [%(severity)s] %(title)s: %(first)s (%(link)s)", severity=word, title=title, first=what,
                    link=code(link))]
    if first:
        return [msg("- [%(severity)s] %(title)s: %(first)s", severity=word, title=title, first=what)]
    if link:
        return [msg("- [%(severity)s] %(title)s (%(link)s)", severity=word, title=title, link=code(link))]
    return [msg("- [%(severity)s] %(title)s", severity=word, title=title)]


def batch(lines: list, total: int, shown: int) -> Composed:
    more = ([[nmsg("- and %(n)s more: see them all in Dawa.", "- and %(n)s more: see them all in Dawa.",
                   n=count(total - shown))]] if total > shown else [])
    return Composed(nmsg("Dawa: %(n)s new alert", "Dawa: %(n)s new alerts", n=count(total)),
                    [[msg("New since the last run:")], [], *lines, *more])


def digest(lines: list, total: int, since: date) -> Composed:
    return Composed(nmsg("Dawa weekly digest: %(n)s alert", "Dawa weekly digest: %(n)s alerts", n=count(total)),
                    [[msg("Alerts held for your digest since %(since)s:", since=day(since))], [], *lines])
