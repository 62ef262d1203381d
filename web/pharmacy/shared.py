"""What every pharmacy page shares: the form messages, the parsing of typed values, the one way a
form's movement is posted (``submit``: idempotent by entry_id, committed with its audit record),
and the page frame with the pharmacy nav."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from stock import errors as domain, rules
from stock.ledger import NewEntry, Posted, post
from stock.models import Facility, Item, LedgerEntry, User
from web import audit
from web.access import REVERSAL_WINDOWS, facility_in_scope, scope_of
from web.pharmacy import queries as q
from web.pharmacy.queries import EntryView
from web.templating import gettext, render

REVERSERS = tuple(REVERSAL_WINDOWS)
"""Who may reverse an entry at all (web.access.reversal_refusal says which entries)."""

PAGES = ("visit", "dispense", "receipt", "transfer-out", "transfers-in", "loss", "count", "today")
LOSS_REASONS = ("expired", "damaged", "theft", "lost", "recalled")
"""The data contract's common loss reasons."""

WARN_FIELDS = {
    "unregistered_patient": "health_card_id",
    "deceased_patient": "health_card_id",
    "expired_lot": "lot_number",
    "over_ceiling": "quantity",
    "beyond_prescription": "prescription_id",
    "unknown_prescription": "prescription_id",
    "prescription_mismatch": "prescription_id",
    "no_prescription": "prescription_id",
}
"""Policy notes of a dispense that need a stated reason to go ahead, and the field each is about.
A dispense without a prescription needs one only for a controlled item (see ``warn_codes``)."""


def warn_codes(item: Item, paper: bool) -> set[str]:
    """The notes that stop a dispense of ``item`` until a reason is stated. A controlled item goes
    out without a prescription on record only with a paper prescription's number (``paper``: the
    number typed, recorded as the entry's prescription) or a stated emergency."""
    codes = set(WARN_FIELDS) - {"no_prescription"}
    if item.controlled:
        codes.add("no_prescription")
    if paper:
        codes.discard("unknown_prescription")
    return codes

ENTRY_FIELDS = ("health_card_id", "item_code", "lot_number", "expiry_date", "quantity", "prescription_id",
                "counterparty_code", "reason", "document_number")
FIELD_OF = {"serial_number": "scan"}
"""A refusal about a value the form holds in a hidden field, shown next to the field that set it."""

MSG_REQUIRED = "This is required."
MSG_NUMBER = "Enter a number, such as 12 or 2.5."
MSG_POSITIVE = "Enter a quantity greater than zero."
MSG_NOT_NEGATIVE = "A counted quantity cannot be negative."
MSG_DATE = "Enter a date as YYYY-MM-DD."
MSG_UNKNOWN_ITEM = "No item has the code %(code)s."
MSG_NOT_HELD = "This facility holds no %(code)s."
MSG_NO_LOT = "Choose a lot of this item held here."
MSG_INSUFFICIENT = "Not enough stock in lot %(lot)s: %(on_hand)s on hand, %(asked)s asked."
MSG_REASON_NEEDED = "State a reason to go ahead."
MSG_LOSS_REASON = "Choose one of the listed reasons."
MSG_RECORDED_OTHERWISE = "This form was already recorded with other content; reload the page to start again."
MSG_NOT_IN_TRANSIT = "This transfer is no longer in transit to this facility."
MSG_MORE_THAN_SENT = "More than was sent (%(sent)s)."
MSG_NO_ENTRY = "No such entry of this facility."
MSG_NO_COUNTS = "Enter at least one counted quantity."
MSG_FAR_FROM_BOOK = "Far from the books: count this lot again, then post again to confirm what you found."
FAR_FROM_BOOK = (Decimal("0.5"), Decimal(10))
"""A count differing from the books by more than this share of them, and by more than this many
units, is asked to be confirmed (counted again) before it is posted. The counter never sees the
book quantity before posting: counts are blind."""
MSG_SCAN_EMPTY = "Scan a pack, or type the text under its barcode."
MSG_SCAN_UNREADABLE = "This is not a GS1 barcode that can be read. Scan again, or fill in the fields by hand."
MSG_SCAN_NO_GTIN = "This barcode holds no GTIN (01): it is not a medicine pack's code."
MSG_SCAN_CHECK_DIGIT = "The GTIN %(gtin)s in this barcode has a wrong check digit: scan again."
MSG_SCAN_UNKNOWN_GTIN = "No item has the GTIN %(gtin)s."
MSG_SCAN_LOT_NOT_HELD = "The scanned lot %(lot)s of %(code)s is not held here."
MSG_SCAN_OTHER_ITEM = "The scanned pack is %(scanned)s, not %(code)s: scan it again or change the item."

SCAN_PAGES = ("dispense", "receipt")
"""The forms with a Scan field."""

# --- helpers ---------------------------------------------------------------------------------


def acting(db: Session, user: User, code: str) -> Facility:
    """The facility in the path, if the user may act on it (404 unknown, 403 outside scope)."""
    return facility_in_scope(db, user, code)


def zone_of(request: Request, fac: Facility) -> ZoneInfo:
    return ZoneInfo(fac.timezone or request.app.state.settings.default_timezone)


def local_today(request: Request, fac: Facility) -> date:
    return datetime.now(zone_of(request, fac)).date()


def fresh_id() -> str:
    return str(uuid.uuid4())


def tr(request: Request, message: str, **variables) -> str:
    return gettext(request.state.lang, message, **variables)


def said(request: Request, exc: domain.DawaError) -> str:
    """A refusal of the ledger in the reader's language: the rule book's refusals carry their
    template (stock.rules), the rest are said as the ledger wrote them."""
    if isinstance(exc, rules.Broken):
        return tr(request, exc.template, **exc.params)
    return exc.message


def form_id(value: str | None) -> str:
    """The form's entry_id; a form posted without one (not drawn by this app) gets one here."""
    value = (value or "").strip()
    return value[:64] if value else fresh_id()


def parse_quantity(request: Request, text: str, errors: dict, field: str = "quantity", *,
              kind: str = "dispense") -> Decimal | None:
    """The typed quantity of a ``kind`` movement, or None with the problem in ``errors``: the sign
    it needs is the rule book's (stock.rules), said in the form's words."""
    text = (text or "").strip().replace(",", ".").replace(" ", "")
    if not text:
        errors[field] = tr(request, MSG_REQUIRED)
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        errors[field] = tr(request, MSG_NUMBER)
        return None
    if not value.is_finite():
        errors[field] = tr(request, MSG_NUMBER)
        return None
    if not rules.sign_allows(kind, value):
        errors[field] = tr(request, MSG_NOT_NEGATIVE if kind == "count" else MSG_POSITIVE)
        return None
    return value


def find_item(request: Request, db: Session, code: str, errors: dict) -> Item | None:
    code = (code or "").strip()
    if not code:
        errors["item_code"] = tr(request, MSG_REQUIRED)
        return None
    item = q.item_by_code(db, code)
    if item is None:
        errors["item_code"] = tr(request, MSG_UNKNOWN_ITEM, code=code)
    return item


@dataclass
class Outcome:
    """What became of a form's movement: posted (or posted before), refused, or needing a reason."""

    posted: Posted | None = None
    already: bool = False
    errors: dict | None = None
    status: int = 200
    warnings: list | None = None


def submit(request: Request, db: Session, fac: Facility, entry: NewEntry, *,
            warn: set[str] | None = None, detail: dict | None = None, also: tuple[NewEntry, ...] = ()) -> Outcome:
    """Post one movement from a form (and ``also`` the entries that go with it, in the same
    transaction), committed with its audit record. A retry of a form already recorded (the same
    entry_id at this facility) is told so and records nothing."""
    before = q.stored(db, entry.entry_id)
    if before is not None:
        return retried(request, db, fac, before)
    try:
        posted = post(db, [entry, *also])[0]
    except domain.InsufficientStock as exc:
        db.rollback()
        return Outcome(errors={"quantity": tr(request, MSG_INSUFFICIENT, lot=exc.lot or "—",
                                                 on_hand=exc.on_hand, asked=exc.asked)}, status=409)
    except domain.EntryConflict:
        db.rollback()  # a double submit that lost the race: the other one recorded it
        stored = q.stored(db, entry.entry_id)
        if stored is not None:
            return retried(request, db, fac, stored)
        return Outcome(errors={"_form": tr(request, MSG_RECORDED_OTHERWISE)}, status=409)
    except domain.DawaError as exc:
        db.rollback()
        field = FIELD_OF.get(exc.field, exc.field if exc.field in ENTRY_FIELDS else "_form")
        return Outcome(errors={field: said(request, exc)}, status=422)
    if not posted.created:
        return retried(request, db, fac, posted.entry)
    notes = [n for n in posted.notes if n.code in (warn or ())]
    if warn and notes and not (entry.reason and entry.reason.strip()):
        db.rollback()
        return Outcome(warnings=notes)
    audit.record(db, request, "ledger_post", "ledger_entry", entry.entry_id,
                 {"kind": entry.kind, "item": entry.item_code, "lot": entry.lot_number,
                  "quantity": entry.quantity, "notes": [n.code for n in posted.notes],
                  "reason": entry.reason, **(detail or {})},
                 facility_id=fac.id)
    db.commit()
    return Outcome(posted=posted)


def retried(request: Request, db: Session, fac: Facility, stored: LedgerEntry) -> Outcome:
    db.rollback()
    if stored.facility_id != fac.id:
        return Outcome(errors={"_form": tr(request, MSG_RECORDED_OTHERWISE)}, status=409)
    return Outcome(already=True)


def done_redirect(fac: Facility, page: str, entry_id: str) -> RedirectResponse:
    return RedirectResponse(f"/pharmacy/{fac.code}/{page}?done={entry_id}", status_code=303)


def done_entry(db: Session, fac: Facility, done: str | None) -> EntryView | None:
    """The entry just recorded, for the line that confirms it. Its patient is named by the last
    digits of the card only: enough for the person who typed it to check, while a confirmation
    page (reachable again by its entry id) is no way to read a patient's card unaudited."""
    if not done:
        return None
    found = q.entries(db, fac, entry_id=done[:64])
    if not found:
        return None
    card = found[0].health_card_id
    return dataclasses.replace(found[0], health_card_id=masked_card(card)) if card else found[0]


def masked_card(card: str) -> str:
    """A health card shown by its last four characters: ``…0001``."""
    card = card.strip()
    return "…" + card[-4:] if len(card) > 4 else "…"


def render_page(request: Request, fac: Facility, name: str, ctx: dict, status: int = 200) -> Response:
    user = request.state.user
    many = scope_of(user).kind != "facility"
    return render(request, f"pharmacy/{name}.html",
                  {"facility": fac, "page": name.replace("_", "-"), "many_facilities": many,
                   "today": local_today(request, fac), **ctx}, status_code=status)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_date(request: Request, text: str, errors: dict, field: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = tr(request, MSG_DATE)
        return None
