"""Pages for pharmacy staff: dispense, receipt, transfer send and receive, loss, count sheet, and
today's entries with reversal.

Every page acts on one facility, named in the path. A pharmacist's scope is their own facility; a
facility manager or an admin with a wider scope picks one from /pharmacy. web.access decides: a
facility outside the user's scope is refused before anything is read. Movements go through the
ledger's one write path (stock.ledger.post / reverse), each with an audit record in the same
transaction.

Every form carries an entry_id (a UUID) made when the form is drawn, so a double click or a retry
after a timeout records the movement once. A form with a problem comes back with the typed input
kept and the problem next to its field. A dispense that breaks a policy (expired lot, patient not
in the register, over the prescription...) is not refused: the page warns and asks for a reason,
and a second submit with the reason records it with the entry.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from stock import errors as domain
from stock import gs1
from stock import rules
from stock.ledger import NewEntry, Posted, post, reverse
from stock.masterdata import item_by_gtin
from stock.models import Balance, Facility, Item, LedgerEntry, Lot, Patient, Prescription, User
from stock.queries import on_hand
from stock.requisitions.packs import pack_with_gtin
from stock.transfers import Leg, match_transfers
from web import audit, deps
from web.access import (
    REVERSAL_WINDOWS,
    STAFF,
    NotFound,
    facility_in_scope,
    require_roles,
    reversal_refusal,
    scope_of,
    visible_facilities,
)
from web.replenishment.pack_entry import in_base_units as in_packs
from web.templating import gettext, render

router = APIRouter(prefix="/pharmacy", include_in_schema=False)

REVERSERS = tuple(REVERSAL_WINDOWS)
"""Who may reverse an entry at all (web.access.reversal_refusal says which entries)."""
PAGE_SIZE = 50
"""Entries per page of today's entries."""

PAGES = ("dispense", "receipt", "transfer-out", "transfers-in", "loss", "count", "today")
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
A dispense without a prescription needs one only for a controlled item (see ``_warn_codes``)."""


def _warn_codes(item: Item, paper: bool) -> set[str]:
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

def _acting(db: Session, user: User, code: str) -> Facility:
    """The facility in the path, if the user may act on it (404 unknown, 403 outside scope)."""
    return facility_in_scope(db, user, code)


def _zone(request: Request, fac: Facility) -> ZoneInfo:
    return ZoneInfo(fac.timezone or request.app.state.settings.default_timezone)


def _today(request: Request, fac: Facility) -> date:
    return datetime.now(_zone(request, fac)).date()


def _fresh_id() -> str:
    return str(uuid.uuid4())


def _t(request: Request, message: str, **variables) -> str:
    return gettext(request.state.lang, message, **variables)


def _said(request: Request, exc: domain.DawaError) -> str:
    """A refusal of the ledger in the reader's language: the rule book's refusals carry their
    template (stock.rules), the rest are said as the ledger wrote them."""
    if isinstance(exc, rules.Broken):
        return _t(request, exc.template, **exc.params)
    return exc.message


def _form_id(value: str | None) -> str:
    """The form's entry_id; a form posted without one (not drawn by this app) gets one here."""
    value = (value or "").strip()
    return value[:64] if value else _fresh_id()


def _quantity(request: Request, text: str, errors: dict, field: str = "quantity", *,
              kind: str = "dispense") -> Decimal | None:
    """The typed quantity of a ``kind`` movement, or None with the problem in ``errors``: the sign
    it needs is the rule book's (stock.rules), said in the form's words."""
    text = (text or "").strip().replace(",", ".").replace(" ", "")
    if not text:
        errors[field] = _t(request, MSG_REQUIRED)
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        errors[field] = _t(request, MSG_NUMBER)
        return None
    if not value.is_finite():
        errors[field] = _t(request, MSG_NUMBER)
        return None
    if not rules.sign_allows(kind, value):
        errors[field] = _t(request, MSG_NOT_NEGATIVE if kind == "count" else MSG_POSITIVE)
        return None
    return value


def _item(request: Request, db: Session, code: str, errors: dict) -> Item | None:
    code = (code or "").strip()
    if not code:
        errors["item_code"] = _t(request, MSG_REQUIRED)
        return None
    item = db.scalars(select(Item).where(Item.code == code)).one_or_none()
    if item is None:
        errors["item_code"] = _t(request, MSG_UNKNOWN_ITEM, code=code)
    return item


@dataclass(frozen=True)
class LotChoice:
    lot_number: str
    expiry_date: date | None
    on_hand: Decimal
    expired: bool


def fefo_lots(db: Session, fac: Facility, item_code: str, today: date) -> list[LotChoice]:
    """The lots of an item on hand here, first-expiry-first-out: unexpired ones by expiry (those
    without a date after them), then expired ones."""
    if not item_code or db.scalars(select(Item.id).where(Item.code == item_code)).first() is None:
        return []
    rows = on_hand(db, facility_code=fac.code, item_code=item_code)
    lots = [LotChoice(r.lot_number, r.expiry_date, r.on_hand,
                      r.expiry_date is not None and r.expiry_date < today) for r in rows]
    return sorted(lots, key=lambda c: rules.fefo_key(c.expiry_date, c.lot_number, today))


def held_items(db: Session, fac: Facility, q: str = "", *, everything: bool = False, limit: int = 20) -> list[Item]:
    """Items matching ``q`` by code or name: those the facility holds, or the whole list."""
    stmt = select(Item).order_by(Item.code).limit(limit)
    if not everything:
        held = select(Balance.item_id).where(Balance.facility_id == fac.id, Balance.on_hand > 0)
        stmt = stmt.where(Item.id.in_(held))
    q = (q or "").strip()
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(Item.code.ilike(like), Item.name.ilike(like)))
    return list(db.scalars(stmt))


@dataclass(frozen=True)
class OpenPrescription:
    code: str
    quantity: Decimal
    dispensed: Decimal
    issued_on: date
    prescriber: str

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.dispensed


def open_prescriptions(db: Session, health_card_id: str, item_code: str) -> list[OpenPrescription]:
    """A patient's prescriptions for an item with something left to dispense, newest first."""
    if not health_card_id or not item_code:
        return []
    reversed_ids = select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))
    dispensed = (select(func.coalesce(func.sum(LedgerEntry.quantity), 0))
                 .where(LedgerEntry.prescription_ref == Prescription.code, LedgerEntry.kind == "dispense",
                        LedgerEntry.entry_id.not_in(reversed_ids))
                 .correlate(Prescription).scalar_subquery())
    stmt = (select(Prescription.code, Prescription.quantity, dispensed, Prescription.issued_on,
                   Prescription.prescriber)
            .join(Patient, Patient.id == Prescription.patient_id)
            .join(Item, Item.id == Prescription.item_id)
            .where(Patient.health_card_id == health_card_id, Item.code == item_code)
            .order_by(Prescription.issued_on.desc(), Prescription.code))
    found = [OpenPrescription(code, Decimal(qty), Decimal(done), issued, prescriber)
             for code, qty, done, issued, prescriber in db.execute(stmt)]
    return [p for p in found if p.remaining > 0]


def _stored(db: Session, entry_id: str) -> LedgerEntry | None:
    return db.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).one_or_none()


@dataclass
class Outcome:
    """What became of a form's movement: posted (or posted before), refused, or needing a reason."""

    posted: Posted | None = None
    already: bool = False
    errors: dict | None = None
    status: int = 200
    warnings: list | None = None


def _submit(request: Request, db: Session, fac: Facility, entry: NewEntry, *,
            warn: set[str] | None = None, detail: dict | None = None, also: tuple[NewEntry, ...] = ()) -> Outcome:
    """Post one movement from a form (and ``also`` the entries that go with it, in the same
    transaction), committed with its audit record. A retry of a form already recorded (the same
    entry_id at this facility) is told so and records nothing."""
    before = _stored(db, entry.entry_id)
    if before is not None:
        return _retried(request, db, fac, before)
    try:
        posted = post(db, [entry, *also])[0]
    except domain.InsufficientStock as exc:
        db.rollback()
        return Outcome(errors={"quantity": _t(request, MSG_INSUFFICIENT, lot=exc.lot or "—",
                                                 on_hand=exc.on_hand, asked=exc.asked)}, status=409)
    except domain.EntryConflict:
        db.rollback()  # a double submit that lost the race: the other one recorded it
        stored = _stored(db, entry.entry_id)
        if stored is not None:
            return _retried(request, db, fac, stored)
        return Outcome(errors={"_form": _t(request, MSG_RECORDED_OTHERWISE)}, status=409)
    except domain.DawaError as exc:
        db.rollback()
        field = FIELD_OF.get(exc.field, exc.field if exc.field in ENTRY_FIELDS else "_form")
        return Outcome(errors={field: _said(request, exc)}, status=422)
    if not posted.created:
        return _retried(request, db, fac, posted.entry)
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


def _retried(request: Request, db: Session, fac: Facility, stored: LedgerEntry) -> Outcome:
    db.rollback()
    if stored.facility_id != fac.id:
        return Outcome(errors={"_form": _t(request, MSG_RECORDED_OTHERWISE)}, status=409)
    return Outcome(already=True)


def _done_redirect(fac: Facility, page: str, entry_id: str) -> RedirectResponse:
    return RedirectResponse(f"/pharmacy/{fac.code}/{page}?done={entry_id}", status_code=303)


@dataclass(frozen=True)
class EntryView:
    entry_id: str
    kind: str
    item_code: str
    item_name: str
    lot_number: str
    quantity: Decimal
    effect: Decimal
    recorded_at: datetime
    recorded_by: str
    health_card_id: str | None
    counterparty: str | None
    reason: str | None
    reverses: str | None
    reversed_by: str | None = None


def _entries(db: Session, fac: Facility, *, since: datetime | None = None, entry_id: str | None = None,
             by: str | None = None, page: int = 1) -> list[EntryView]:
    """The facility's entries, newest first: one (``entry_id``), or those recorded ``since``
    (by ``by`` only, when given), a page of PAGE_SIZE at a time."""
    from sqlalchemy.orm import aliased

    reversal = aliased(LedgerEntry)
    stmt = (select(LedgerEntry.entry_id, LedgerEntry.kind, Item.code, Item.name, Lot.lot_number,
                   LedgerEntry.quantity, LedgerEntry.effect, LedgerEntry.recorded_at, LedgerEntry.recorded_by,
                   Patient.health_card_id, LedgerEntry.counterparty, LedgerEntry.reason, LedgerEntry.reverses,
                   reversal.entry_id)
            .join(Item, Item.id == LedgerEntry.item_id)
            .join(Lot, Lot.id == LedgerEntry.lot_id)
            .outerjoin(Patient, Patient.id == LedgerEntry.patient_id)
            .outerjoin(reversal, reversal.reverses == LedgerEntry.entry_id)
            .where(LedgerEntry.facility_id == fac.id)
            .order_by(LedgerEntry.chain_seq.desc()))
    if since is not None:
        stmt = stmt.where(LedgerEntry.recorded_at >= since)
    if by is not None:
        stmt = stmt.where(LedgerEntry.recorded_by == by)
    if entry_id is not None:
        stmt = stmt.where(LedgerEntry.entry_id == entry_id)
    else:
        stmt = stmt.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)
    return [EntryView(*row) for row in db.execute(stmt)]


def _done(db: Session, fac: Facility, done: str | None) -> EntryView | None:
    """The entry just recorded, for the line that confirms it. Its patient is named by the last
    digits of the card only: enough for the person who typed it to check, while a confirmation
    page (reachable again by its entry id) is no way to read a patient's card unaudited."""
    if not done:
        return None
    found = _entries(db, fac, entry_id=done[:64])
    if not found:
        return None
    card = found[0].health_card_id
    return dataclasses.replace(found[0], health_card_id=masked_card(card)) if card else found[0]


def masked_card(card: str) -> str:
    """A health card shown by its last four characters: ``…0001``."""
    card = card.strip()
    return "…" + card[-4:] if len(card) > 4 else "…"


def _page(request: Request, fac: Facility, name: str, ctx: dict, status: int = 200) -> Response:
    user = request.state.user
    many = scope_of(user).kind != "facility"
    return render(request, f"pharmacy/{name}.html",
                  {"facility": fac, "page": name.replace("_", "-"), "many_facilities": many,
                   "today": _today(request, fac), **ctx}, status_code=status)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- scanning a pack ---------------------------------------------------------------------------

def _scan_message(request: Request, exc: domain.BadScan) -> str:
    if exc.problem == "empty":
        return _t(request, MSG_SCAN_EMPTY)
    if exc.problem == "no_gtin":
        return _t(request, MSG_SCAN_NO_GTIN)
    if exc.problem == "check_digit":
        return _t(request, MSG_SCAN_CHECK_DIGIT, gtin=exc.gtin or "")
    return _t(request, MSG_SCAN_UNREADABLE)


def _apply_scan(request: Request, db: Session, values: dict, errors: dict, *, packs: bool = False) -> bool:
    """Fill item, lot and expiry from the form's Scan field, keeping the pack's GTIN and serial in
    hidden fields. A scan that cannot be used is an error next to the field, with the scan kept;
    one that filled the form is cleared, ready for the next pack. True when a scan was applied."""
    text = values.get("scan", "")
    if not text.strip():
        return False
    try:
        scan = gs1.parse_scan(text)
    except domain.BadScan as exc:
        errors["scan"] = _scan_message(request, exc)
        return False
    item, pack = item_by_gtin(db, scan.gtin), None
    if item is None and packs:  # a form counted in packs: a pack's GTIN names its item and pack
        item, pack = pack_with_gtin(db, scan.gtin) or (None, None)
    if item is None:
        errors["scan"] = _t(request, MSG_SCAN_UNKNOWN_GTIN, gtin=scan.gtin)
        return False
    values.update(item_code=item.code, scan_gtin=scan.gtin if pack is None else item.gtin or "",
                  serial_number=scan.serial_number or "", scan="", pack=pack.name if pack else "")
    if scan.lot_number is not None:
        values["lot_number"] = scan.lot_number
    if scan.expiry_date is not None:
        values["expiry_date"] = scan.expiry_date.isoformat()
    return True


def _scanned_pack(request: Request, values: dict, item: Item, errors: dict) -> str | None:
    """The serial to record: the scanned pack's, if the form still names the scanned item."""
    serial = values.get("serial_number", "").strip()
    if not serial:
        return None
    scanned = values.get("scan_gtin", "").strip()
    if scanned and item.gtin != scanned:
        errors["scan"] = _t(request, MSG_SCAN_OTHER_ITEM, scanned=scanned, code=item.code)
        return None
    return serial


@router.post("/{facility}/scan")
def scan_fill(request: Request, facility: str, page: str = "dispense",
                    user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db), values: dict[str, str] = Depends(deps.form_fields)):
    """htmx: the form, filled from its Scan field (or with the scan's problem next to it), typed
    input kept. Records nothing; the form's own submit does. Always 200 so htmx swaps it in."""
    fac = _acting(db, user, facility)
    page = page if page in SCAN_PAGES else "dispense"
    values["entry_id"] = _form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    if not values.get("scan", "").strip():
        errors["scan"] = _t(request, MSG_SCAN_EMPTY)
        scanned = False
    else:
        scanned = _apply_scan(request, db, values, errors, packs=page == "receipt")
    if page == "receipt":
        return _receipt_page(request, fac, values, errors=errors, scanned=scanned)
    if scanned:
        _check_scanned_lot(request, db, fac, values, errors)
    return _dispense_page(request, db, fac, values, errors=errors, scanned=scanned)


def _check_scanned_lot(request: Request, db: Session, fac: Facility, values: dict, errors: dict) -> None:
    lot = values.get("lot_number", "")
    held = fefo_lots(db, fac, values["item_code"], _today(request, fac))
    if lot and not any(c.lot_number == lot for c in held):
        errors["lot_number"] = _t(request, MSG_SCAN_LOT_NOT_HELD, lot=lot, code=values["item_code"])


# --- choosing a facility ---------------------------------------------------------------------

@router.get("")
def start(page: str = "dispense", user: User = Depends(require_roles(*STAFF)),
          db: Session = Depends(deps.read_db)):
    """Where the pharmacy pages start: a user of one facility goes straight to it; a manager or an
    admin with a wider scope goes to the list to pick one."""
    page = page if page in PAGES else "dispense"
    if scope_of(user).kind == "facility":
        facilities = visible_facilities(db, user)
        if facilities:
            return RedirectResponse(f"/pharmacy/{facilities[0].code}/{page}", status_code=303)
    return RedirectResponse(f"/pharmacy/choose?page={page}", status_code=303)


@router.get("/choose")
def choose(request: Request, page: str = "dispense", user: User = Depends(require_roles(*STAFF)),
           db: Session = Depends(deps.read_db)):
    """The facilities the user may act on, each a link to the page asked for."""
    page = page if page in PAGES else "dispense"
    return render(request, "pharmacy/pick.html", {"facilities": visible_facilities(db, user), "page": page})


# --- htmx pieces -----------------------------------------------------------------------------

@router.get("/{facility}/items")
def items(request: Request, facility: str, item_code: str = "", all: int = 0,
          user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    """Type-ahead options: the items the facility holds (or, for a receipt, every item)."""
    fac = _acting(db, user, facility)
    found = held_items(db, fac, item_code, everything=bool(all))
    return render(request, "pharmacy/_items.html", {"items": found})


@router.get("/{facility}/lots")
def lots(request: Request, facility: str, item_code: str = "", lot_number: str = "",
         user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    """The lots of the chosen item on hand here, the one to use first selected."""
    fac = _acting(db, user, facility)
    choices = fefo_lots(db, fac, item_code.strip(), _today(request, fac))
    return render(request, "pharmacy/_lots.html", {"lots": choices, "value": lot_number or None, "error": None})


@router.post("/{facility}/prescriptions")
def prescriptions(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                  db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """The patient's open prescriptions for the chosen item (a read of the patient's record, audited).
    Asked by POST, the card in the body: a health card is never put in a URL."""
    fac = _acting(db, user, facility)
    card, code = values.get("health_card_id", "").strip(), values.get("item_code", "").strip()
    prescription_id, paper_prescription = values.get("prescription_id", ""), values.get("paper_prescription", "")
    found = open_prescriptions(db, card, code)
    if card and code:
        audit.record(db, request, "patient_prescriptions_read", "patient", card,
                     {"item": code, "found": len(found)}, facility_id=fac.id)
        db.commit()
    return render(request, "pharmacy/_rx.html", {"prescriptions": found, "value": prescription_id or None,
                                                 "paper": paper_prescription[:64], "error": None, "warning": None})


# --- dispense --------------------------------------------------------------------------------

def _dispense_page(request: Request, db: Session, fac: Facility, values: dict, *, errors: dict | None = None,
                   warnings: list | None = None, done: EntryView | None = None, already: bool = False,
                   status: int = 200, scanned: bool = False) -> Response:
    today = _today(request, fac)
    code = (values.get("item_code") or "").strip()
    card = (values.get("health_card_id") or "").strip()
    warned = {}
    for note in warnings or []:
        warned.setdefault(WARN_FIELDS[note.code], []).append(note)
    return _page(request, fac, "dispense", {
        "values": values, "errors": errors or {}, "warnings": warnings or [], "warned": warned,
        "done": done, "already": already, "scanned": scanned,
        "items": held_items(db, fac, ""), "lots": fefo_lots(db, fac, code, today),
        "prescriptions": open_prescriptions(db, card, code) if card and code else [],
    }, status)


@router.get("/{facility}/dispense")
def dispense_form(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
                  db: Session = Depends(deps.read_db)):
    fac = _acting(db, user, facility)
    return _dispense_page(request, db, fac, {"entry_id": _fresh_id()}, done=_done(db, fac, done))


@router.post("/{facility}/dispense")
def dispense_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                          db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = _acting(db, user, facility)
    values["entry_id"] = _form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    # Without scripts a scanner's Enter submits the form: fill it from the scan, and record only
    # when the rest is there too.
    scanned = _apply_scan(request, db, values, errors)
    if errors:
        return _dispense_page(request, db, fac, values, errors=errors, status=422)
    card = values.get("health_card_id", "").strip()
    if scanned and not (card and values.get("quantity", "").strip()):
        _check_scanned_lot(request, db, fac, values, errors)
        return _dispense_page(request, db, fac, values, errors=errors, scanned=True)
    if not card:
        errors["health_card_id"] = _t(request, MSG_REQUIRED)
    item = _item(request, db, values.get("item_code", ""), errors)
    serial = _scanned_pack(request, values, item, errors) if item is not None else None
    quantity = _quantity(request, values.get("quantity", ""), errors)
    lot_number = values.get("lot_number", "").strip()
    if item is not None:
        held = fefo_lots(db, fac, item.code, _today(request, fac))
        if not held:
            errors["lot_number"] = _t(request, MSG_NOT_HELD, code=item.code)
        elif not any(c.lot_number == lot_number for c in held):
            errors["lot_number"] = _t(request, MSG_NO_LOT)
    reason = values.get("reason", "").strip()
    if values.get("confirm") and not reason:
        errors["reason"] = _t(request, MSG_REASON_NEEDED)
    if errors:
        return _dispense_page(request, db, fac, values, errors=errors, status=422)
    on_record = values.get("prescription_id", "").strip()
    paper = "" if on_record else values.get("paper_prescription", "").strip()
    entry = NewEntry(entry_id=values["entry_id"], kind="dispense", facility_code=fac.code, item_code=item.code,
                     quantity=quantity, occurred_at=_now(), recorded_by=user.username, lot_number=lot_number,
                     health_card_id=card, prescription_id=on_record or paper or None,
                     reason=reason or None, serial_number=serial)
    outcome = _submit(request, db, fac, entry, warn=_warn_codes(item, bool(paper)),
                      detail={"paper_prescription": True} if paper else None)
    if outcome.errors:
        return _dispense_page(request, db, fac, values, errors=outcome.errors, status=outcome.status)
    if outcome.warnings:
        return _dispense_page(request, db, fac, values, warnings=outcome.warnings)
    return _done_redirect(fac, "dispense", entry.entry_id)


# --- receipt ---------------------------------------------------------------------------------

def _parse_date(request: Request, text: str, errors: dict, field: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = _t(request, MSG_DATE)
        return None


@router.get("/{facility}/receipt")
def receipt_form(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
                 db: Session = Depends(deps.read_db)):
    fac = _acting(db, user, facility)
    return _receipt_page(request, fac, {"entry_id": _fresh_id()}, done=_done(db, fac, done))


def _receipt_page(request: Request, fac: Facility, values: dict, *, errors: dict | None = None,
                  done: EntryView | None = None, scanned: bool = False, status: int = 200) -> Response:
    return _page(request, fac, "receipt", {"values": values, "errors": errors or {}, "done": done,
                                           "scanned": scanned}, status)


@router.post("/{facility}/receipt")
def receipt_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                         db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = _acting(db, user, facility)
    values["entry_id"] = _form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    scanned = _apply_scan(request, db, values, errors, packs=True)
    if errors:
        return _receipt_page(request, fac, values, errors=errors, status=422)
    if scanned and not values.get("quantity", "").strip():
        return _receipt_page(request, fac, values, scanned=True)
    item = _item(request, db, values.get("item_code", ""), errors)
    serial = _scanned_pack(request, values, item, errors) if item is not None else None
    quantity = in_packs(request, db, item, _quantity(request, values.get("quantity", ""), errors), values, errors)
    expiry = _parse_date(request, values.get("expiry_date", ""), errors, "expiry_date")
    if errors:
        return _receipt_page(request, fac, values, errors=errors, status=422)
    entry = NewEntry(entry_id=values["entry_id"], kind="receipt", facility_code=fac.code, item_code=item.code,
                     quantity=quantity, occurred_at=_now(), recorded_by=user.username,
                     lot_number=values.get("lot_number", "").strip(), expiry_date=expiry,
                     counterparty_code=values.get("counterparty_code", "").strip() or None,
                     document_number=values.get("document_number", "").strip() or None,
                     reason=rules.DESTRUCTION if values.get("for_destruction") else None,
                     serial_number=serial)
    outcome = _submit(request, db, fac, entry)
    if outcome.errors:
        return _receipt_page(request, fac, values, errors=outcome.errors, status=outcome.status)
    return _done_redirect(fac, "receipt", entry.entry_id)


# --- transfer out ----------------------------------------------------------------------------

def _destinations(db: Session, fac: Facility) -> list[tuple[str, str]]:
    """Where a transfer may go: any other facility, as (code, label) choices."""
    others = db.scalars(select(Facility).where(Facility.id != fac.id).order_by(Facility.code))
    return [(f.code, f"{f.name} ({f.code})") for f in others]


def _document_number(fac: Facility) -> str:
    return f"TR-{fac.code}-{datetime.now(timezone.utc):%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"


def _transfer_page(request: Request, db: Session, fac: Facility, values: dict, errors: dict,
                   done: EntryView | None = None, status: int = 200) -> Response:
    code = (values.get("item_code") or "").strip()
    return _page(request, fac, "transfer_out", {
        "values": values, "errors": errors, "done": done, "destinations": _destinations(db, fac),
        "items": held_items(db, fac, ""), "lots": fefo_lots(db, fac, code, _today(request, fac)),
    }, status)


@router.get("/{facility}/transfer-out")
def transfer_out_form(request: Request, facility: str, done: str = "",
                      user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    fac = _acting(db, user, facility)
    values = {"entry_id": _fresh_id(), "document_number": _document_number(fac)}
    return _transfer_page(request, db, fac, values, {}, _done(db, fac, done))


@router.post("/{facility}/transfer-out")
def transfer_out_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                              db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = _acting(db, user, facility)
    values["entry_id"] = _form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    to = values.get("counterparty_code", "").strip()
    if not to:
        errors["counterparty_code"] = _t(request, MSG_REQUIRED)
    elif problem := rules.transfer_problem("transfer_out", fac.code, to):
        errors["counterparty_code"] = _said(request, problem)
    item = _item(request, db, values.get("item_code", ""), errors)
    quantity = in_packs(request, db, item, _quantity(request, values.get("quantity", ""), errors), values, errors)
    lot_number = values.get("lot_number", "").strip()
    if item is not None and not any(c.lot_number == lot_number
                                    for c in fefo_lots(db, fac, item.code, _today(request, fac))):
        errors["lot_number"] = _t(request, MSG_NO_LOT)
    if errors:
        return _transfer_page(request, db, fac, values, errors, status=422)
    entry = NewEntry(entry_id=values["entry_id"], kind="transfer_out", facility_code=fac.code,
                     item_code=item.code, quantity=quantity, occurred_at=_now(), recorded_by=user.username,
                     lot_number=lot_number, counterparty_code=to,
                     document_number=values.get("document_number", "").strip() or None)
    outcome = _submit(request, db, fac, entry)
    if outcome.errors:
        return _transfer_page(request, db, fac, values, outcome.errors, status=outcome.status)
    return _done_redirect(fac, "transfer-out", entry.entry_id)


# --- transfers in ----------------------------------------------------------------------------

def in_transit(db: Session, fac: Facility) -> list[Leg]:
    """Transfers sent to this facility that have not arrived (stock.transfers' unmatched legs)."""
    return [leg for leg in match_transfers(db).unmatched_out if leg.counterparty == fac.code]


def _transfers_in_page(request: Request, db: Session, fac: Facility, *, errors: dict | None = None,
                       values: dict | None = None, done: EntryView | None = None, status: int = 200) -> Response:
    legs = in_transit(db, fac)
    expiries = {}
    for leg in legs:
        lot = db.scalars(select(Lot).join(Item, Item.id == Lot.item_id)
                         .where(Item.code == leg.item_code, Lot.lot_number == leg.lot_number)).one_or_none()
        expiries[leg.entry_id] = lot.expiry_date if lot else None
    return _page(request, fac, "transfers_in", {
        "legs": legs, "expiries": expiries, "row_ids": {leg.entry_id: _fresh_id() for leg in legs},
        "errors": errors or {}, "values": values or {}, "done": done}, status)


@router.get("/{facility}/transfers-in")
def transfers_in(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
                 db: Session = Depends(deps.read_db)):
    fac = _acting(db, user, facility)
    return _transfers_in_page(request, db, fac, done=_done(db, fac, done))


@router.post("/{facility}/transfers-in")
def transfer_in_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                             db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = _acting(db, user, facility)
    entry_id = _form_id(values.get("entry_id"))
    out_id = values.get("out_entry_id", "").strip()
    stored = _stored(db, entry_id)
    if stored is not None:
        outcome = _retried(request, db, fac, stored)
        if outcome.already:
            return _done_redirect(fac, "transfers-in", entry_id)
        return _transfers_in_page(request, db, fac, errors={out_id: outcome.errors["_form"]}, status=409)
    leg = next((leg for leg in in_transit(db, fac) if leg.entry_id == out_id), None)
    errors: dict[str, str] = {}
    if leg is None:
        return _transfers_in_page(request, db, fac, errors={out_id or "_form": _t(request, MSG_NOT_IN_TRANSIT)},
                                  values=values, status=409 if out_id else 422)
    quantity = _quantity(request, values.get("quantity", ""), errors)
    reason = values.get("reason", "").strip()
    if quantity is not None and quantity > leg.quantity:
        errors["quantity"] = _t(request, MSG_MORE_THAN_SENT, sent=leg.quantity)
    elif quantity is not None and (short := rules.short_arrival_problem(leg.quantity, quantity, reason)):
        errors["quantity"] = _said(request, short)
    if errors:
        return _transfers_in_page(request, db, fac, errors={out_id: errors["quantity"]}, values=values, status=422)
    lot = db.scalars(select(Lot).join(Item, Item.id == Lot.item_id)
                     .where(Item.code == leg.item_code, Lot.lot_number == leg.lot_number)).one()
    # What was sent arrives in the books; what is missing leaves them at once as a loss on arrival.
    now = _now()
    entry = NewEntry(entry_id=entry_id, kind="transfer_in", facility_code=fac.code, item_code=leg.item_code,
                     quantity=leg.quantity, occurred_at=now, recorded_by=user.username, lot_number=leg.lot_number,
                     expiry_date=lot.expiry_date, counterparty_code=leg.facility_code,
                     document_number=leg.document_number)
    missing = leg.quantity - quantity
    also = (NewEntry(entry_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"short-on-arrival:{entry_id}")), kind="loss",
                     facility_code=fac.code, item_code=leg.item_code, quantity=missing, occurred_at=now,
                     recorded_by=user.username, lot_number=leg.lot_number,
                     reason=rules.short_arrival_reason(reason), document_number=leg.document_number),) if missing else ()
    outcome = _submit(request, db, fac, entry, also=also,
                      detail={"transfer_out": leg.entry_id, "received": quantity, "missing": missing})
    if outcome.errors:
        message = next(iter(outcome.errors.values()))
        return _transfers_in_page(request, db, fac, errors={out_id: message}, values=values, status=outcome.status)
    return _done_redirect(fac, "transfers-in", entry_id)


# --- loss ------------------------------------------------------------------------------------

def _loss_page(request: Request, db: Session, fac: Facility, values: dict, errors: dict,
               done: EntryView | None = None, status: int = 200) -> Response:
    code = (values.get("item_code") or "").strip()
    return _page(request, fac, "loss", {
        "values": values, "errors": errors, "done": done, "reasons": LOSS_REASONS,
        "items": held_items(db, fac, ""), "lots": fefo_lots(db, fac, code, _today(request, fac)),
    }, status)


@router.get("/{facility}/loss")
def loss_form(request: Request, facility: str, done: str = "", user: User = Depends(require_roles(*STAFF)),
              db: Session = Depends(deps.read_db)):
    fac = _acting(db, user, facility)
    return _loss_page(request, db, fac, {"entry_id": _fresh_id()}, {}, _done(db, fac, done))


@router.post("/{facility}/loss")
def loss_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                      db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    fac = _acting(db, user, facility)
    values["entry_id"] = _form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    item = _item(request, db, values.get("item_code", ""), errors)
    quantity = _quantity(request, values.get("quantity", ""), errors)
    reason = values.get("reason", "").strip()
    if reason not in LOSS_REASONS:
        errors["reason"] = _t(request, MSG_LOSS_REASON)
    lot_number = values.get("lot_number", "").strip()
    if item is not None and not any(c.lot_number == lot_number
                                    for c in fefo_lots(db, fac, item.code, _today(request, fac))):
        errors["lot_number"] = _t(request, MSG_NO_LOT)
    if errors:
        return _loss_page(request, db, fac, values, errors, status=422)
    entry = NewEntry(entry_id=values["entry_id"], kind="loss", facility_code=fac.code, item_code=item.code,
                     quantity=quantity, occurred_at=_now(), recorded_by=user.username, lot_number=lot_number,
                     reason=reason)
    outcome = _submit(request, db, fac, entry)
    if outcome.errors:
        return _loss_page(request, db, fac, values, outcome.errors, status=outcome.status)
    return _done_redirect(fac, "loss", entry.entry_id)


# --- count sheet -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SheetLine:
    lot_id: int
    item_code: str
    item_name: str
    unit: str
    lot_number: str
    expiry_date: date | None
    on_hand: Decimal


def count_sheet(db: Session, fac: Facility) -> list[SheetLine]:
    """Every item and lot on hand at the facility, by item then expiry."""
    stmt = (select(Lot.id, Item.code, Item.name, Item.unit, Lot.lot_number, Lot.expiry_date, Balance.on_hand)
            .join(Item, Item.id == Balance.item_id).join(Lot, Lot.id == Balance.lot_id)
            .where(Balance.facility_id == fac.id, Balance.on_hand > 0))
    lines = [SheetLine(*row) for row in db.execute(stmt)]
    return sorted(lines, key=lambda s: (s.item_code, s.expiry_date is None, s.expiry_date or date.max,
                                        s.lot_number))


def _count_entry_id(sheet_id: str, lot_id: int) -> str:
    return f"count-{sheet_id}-{lot_id}"


@dataclass(frozen=True)
class CountResult:
    item_code: str
    lot_number: str
    counted: Decimal
    book: Decimal

    @property
    def variance(self) -> Decimal:
        return self.counted - self.book


def sheet_results(db: Session, fac: Facility, sheet_id: str) -> list[CountResult]:
    """What a posted count sheet found against the books, shown once the counts are in."""
    if not sheet_id:
        return []
    stmt = (select(Item.code, Lot.lot_number, LedgerEntry.quantity, LedgerEntry.book_quantity)
            .join(Item, Item.id == LedgerEntry.item_id).join(Lot, Lot.id == LedgerEntry.lot_id)
            .where(LedgerEntry.facility_id == fac.id, LedgerEntry.kind == "count",
                   LedgerEntry.entry_id.like(_count_entry_id(sheet_id[:36], 0).removesuffix("0") + "%"))
            .order_by(Item.code, Lot.lot_number))
    return [CountResult(code, lot, counted, book or Decimal(0)) for code, lot, counted, book in db.execute(stmt)]


def _count_page(request: Request, db: Session, fac: Facility, values: dict, errors: dict,
                done: int | None = None, status: int = 200, results: list | None = None,
                confirm: bool = False) -> Response:
    return _page(request, fac, "count", {"lines": count_sheet(db, fac), "values": values, "errors": errors,
                                         "done_count": done, "results": results or [], "confirm": confirm},
                 status)


@router.get("/{facility}/count")
def count_form(request: Request, facility: str, done: int | None = None, sheet: str = "",
               user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    fac = _acting(db, user, facility)
    results = sheet_results(db, fac, sheet) if done else []
    return _count_page(request, db, fac, {"sheet_id": _fresh_id()}, {}, done, results=results)


def _far_from_book(db: Session, fac: Facility, counted: list) -> list[int]:
    """Lots whose count is far from the books (FAR_FROM_BOOK)."""
    share, units = FAR_FROM_BOOK
    far = []
    for lot, _item, quantity in counted:
        book = db.scalar(select(Balance.on_hand).where(Balance.facility_id == fac.id, Balance.lot_id == lot.id))
        gap = abs(quantity - (book or 0))
        if gap > units and gap > share * (book or 0):
            far.append(lot.id)
    return far


@router.post("/{facility}/count")
def count_submit(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                       db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """Post a count for every line filled in, all in one transaction, or none."""
    fac = _acting(db, user, facility)
    sheet_id = values.get("sheet_id", "").strip()[:36] or _fresh_id()
    values["sheet_id"] = sheet_id
    errors: dict[str, str] = {}
    counted: list[tuple[Lot, Item, Decimal]] = []
    for key, text in values.items():
        if not key.startswith("counted_") or not text.strip():
            continue
        try:
            lot_id = int(key.removeprefix("counted_"))
        except ValueError:
            continue
        lot = db.get(Lot, lot_id)
        if lot is None:
            continue
        quantity = _quantity(request, text, errors, key, kind="count")
        if quantity is not None:
            counted.append((lot, db.get(Item, lot.item_id), quantity))
    if not counted and not errors:
        errors["_form"] = _t(request, MSG_NO_COUNTS)
    if errors:
        return _count_page(request, db, fac, values, errors, status=422)
    far = _far_from_book(db, fac, counted)
    if far and not values.get("confirm"):
        db.rollback()
        return _count_page(request, db, fac, values, {f"counted_{lot_id}": _t(request, MSG_FAR_FROM_BOOK)
                                                      for lot_id in far}, confirm=True)
    ids = [_count_entry_id(sheet_id, lot.id) for lot, _, _ in counted]
    if db.scalars(select(LedgerEntry.id).where(LedgerEntry.entry_id.in_(ids))).first() is not None:
        db.rollback()  # the sheet was posted before: a retry
        return RedirectResponse(f"/pharmacy/{fac.code}/count?done={len(ids)}&sheet={sheet_id}", status_code=303)
    now = _now()
    entries = [NewEntry(entry_id=_count_entry_id(sheet_id, lot.id), kind="count", facility_code=fac.code,
                        item_code=item.code, quantity=quantity, occurred_at=now, recorded_by=user.username,
                        lot_number=lot.lot_number)
               for lot, item, quantity in counted]
    try:
        posted = post(db, entries, now=now)
    except domain.DawaError as exc:
        db.rollback()
        return _count_page(request, db, fac, values, {"_form": exc.message}, status=422)
    for p in posted:
        audit.record(db, request, "ledger_post", "ledger_entry", p.entry.entry_id,
                     {"kind": "count", "quantity": p.entry.quantity, "book": p.entry.book_quantity,
                      "sheet": sheet_id}, facility_id=fac.id)
    db.commit()
    return RedirectResponse(f"/pharmacy/{fac.code}/count?done={len(posted)}&sheet={sheet_id}", status_code=303)


# --- today's entries and reversal ------------------------------------------------------------

def _today_page(request: Request, db: Session, fac: Facility, *, errors: dict | None = None,
                values: dict | None = None, done: EntryView | None = None, status: int = 200,
                page: int = 1) -> Response:
    """The signed-in user's entries of today (a facility manager's or an admin's: the facility's),
    newest first, PAGE_SIZE a page; a Reverse form on each entry the user may reverse."""
    zone = _zone(request, fac)
    start = datetime.combine(_today(request, fac), time.min, tzinfo=zone).astimezone(timezone.utc)
    user = request.state.user
    page = max(page, 1)
    rows = _entries(db, fac, since=start, by=user.username if user.role == "pharmacist" else None, page=page)
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    now = _now()
    reversible = {r.entry_id for r in rows
                  if reversal_refusal(user, entry_id=r.entry_id, facility=fac, recorded_by=r.recorded_by,
                                      recorded_at=r.recorded_at, now=now) is None}
    patients = len({r.health_card_id for r in rows if r.health_card_id})
    if patients:  # the page names patients: a patient-level read, recorded with their number
        audit.record(db, request, "today_read", "facility", fac.code,
                     {"entries": len(rows), "patients": patients, "page": page}, facility_id=fac.id)
        db.commit()
    return _page(request, fac, "today", {
        "entries": rows, "reversible": reversible, "row_ids": {r.entry_id: _fresh_id() for r in rows},
        "errors": errors or {}, "values": values or {}, "done": done, "zone": str(zone),
        "page_number": page, "more": more, "own_only": user.role == "pharmacist"}, status)


@router.get("/{facility}/today")
def today(request: Request, facility: str, done: str = "", page: int = 1,
          user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.db)):
    fac = _acting(db, user, facility)
    return _today_page(request, db, fac, done=_done(db, fac, done), page=page)


@router.post("/{facility}/reverse")
def reverse_submit(request: Request, facility: str, user: User = Depends(require_roles(*REVERSERS)),
                         db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """Reverse one of the facility's entries by its exact inverse, with a stated reason, if
    web.access lets this user reverse it."""
    fac = _acting(db, user, facility)
    target_id = values.get("entry_id", "").strip()
    new_id = _form_id(values.get("new_id"))
    reason = values.get("reason", "").strip()
    if not target_id:
        return _today_page(request, db, fac, errors={"_form": _t(request, MSG_NO_ENTRY)}, status=422)
    target = _stored(db, target_id)
    if target is None or target.facility_id != fac.id:
        raise NotFound(_t(request, MSG_NO_ENTRY), field="entry_id")
    done = _stored(db, new_id)
    if done is not None and done.reverses == target_id:
        db.rollback()  # a retry of a reversal already recorded
        return RedirectResponse(f"/pharmacy/{fac.code}/today?done={new_id}", status_code=303)

    def again(message: str, status: int) -> Response:
        db.rollback()
        return _today_page(request, db, fac, errors={target_id: message}, values={target_id: reason},
                           status=status)

    refusal = reversal_refusal(user, entry_id=target_id, facility=fac, recorded_by=target.recorded_by,
                               recorded_at=target.recorded_at, now=_now())
    if refusal is not None:  # the entry may not be on this user's list: said above it
        db.rollback()
        return _today_page(request, db, fac, errors={"_form": _t(request, refusal.template, **refusal.params)},
                           status=403)
    if not reason:
        return again(_t(request, MSG_REASON_NEEDED), 422)
    try:
        posted = reverse(db, target_id, reason=reason, by=user.username, new_id=new_id)
    except domain.InsufficientStock as exc:
        return again(_t(request, MSG_INSUFFICIENT, lot=exc.lot or "—", on_hand=exc.on_hand, asked=exc.asked), 409)
    except domain.DawaError as exc:
        return again(_said(request, exc), 409 if isinstance(exc, domain.AlreadyReversed) else 422)
    audit.record(db, request, "ledger_reverse", "ledger_entry", target_id,
                 {"reversal": posted.entry.entry_id, "reason": reason, "kind": target.kind,
                  "effect": -target.effect}, facility_id=fac.id)
    db.commit()
    return RedirectResponse(f"/pharmacy/{fac.code}/today?done={new_id}", status_code=303)


__all__ = ["router", "fefo_lots", "held_items", "open_prescriptions", "in_transit", "count_sheet"]
