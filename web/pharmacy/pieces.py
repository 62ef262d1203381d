"""Where the pharmacy pages start (a facility to act on), and the htmx pieces the forms ask for:
item type-ahead, lots, a patient's open prescriptions, a scanned form filled in."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from stock.models import User
from web import audit, deps
from web.access import STAFF, require_roles, scope_of, visible_facilities
from web.pharmacy import queries as q
from web.pharmacy.dispense import dispense_page
from web.pharmacy.receipt import receipt_page
from web.pharmacy.scan import apply_scan, check_scanned_lot
from web.pharmacy.shared import MSG_SCAN_EMPTY, PAGES, SCAN_PAGES, acting, form_id, local_today, tr
from web.templating import render

router = APIRouter(prefix="/pharmacy", include_in_schema=False)


@router.get("")
def start(page: str = "visit", user: User = Depends(require_roles(*STAFF)),
          db: Session = Depends(deps.read_db)):
    """Where the pharmacy pages start: a user of one facility goes straight to it; a manager or an
    admin with a wider scope goes to the list to pick one."""
    page = page if page in PAGES else "visit"
    if scope_of(user).kind == "facility":
        facilities = visible_facilities(db, user)
        if facilities:
            return RedirectResponse(f"/pharmacy/{facilities[0].code}/{page}", status_code=303)
    return RedirectResponse(f"/pharmacy/choose?page={page}", status_code=303)


@router.get("/choose")
def choose(request: Request, page: str = "visit", user: User = Depends(require_roles(*STAFF)),
           db: Session = Depends(deps.read_db)):
    """The facilities the user may act on, each a link to the page asked for."""
    page = page if page in PAGES else "visit"
    return render(request, "pharmacy/pick.html", {"facilities": visible_facilities(db, user), "page": page})


# --- htmx pieces -----------------------------------------------------------------------------


@router.get("/{facility}/items")
def items(request: Request, facility: str, item_code: str = "", all: int = 0,
          user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    """Type-ahead options: the items the facility holds (or, for a receipt, every item)."""
    fac = acting(db, user, facility)
    found = q.held_items(db, fac, item_code, everything=bool(all))
    return render(request, "pharmacy/_items.html", {"items": found})


@router.get("/{facility}/lots")
def lots(request: Request, facility: str, item_code: str = "", lot_number: str = "",
         user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db)):
    """The lots of the chosen item on hand here, the one to use first selected."""
    fac = acting(db, user, facility)
    choices = q.fefo_lots(db, fac, item_code.strip(), local_today(request, fac))
    return render(request, "pharmacy/_lots.html", {"lots": choices, "value": lot_number or None, "error": None})


@router.post("/{facility}/prescriptions")
def prescriptions(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                  db: Session = Depends(deps.db), values: dict[str, str] = Depends(deps.form_fields)):
    """The patient's open prescriptions for the chosen item (a read of the patient's record, audited).
    Asked by POST, the card in the body: a health card is never put in a URL."""
    fac = acting(db, user, facility)
    card, code = values.get("health_card_id", "").strip(), values.get("item_code", "").strip()
    prescription_id, paper_prescription = values.get("prescription_id", ""), values.get("paper_prescription", "")
    found = q.open_prescriptions(db, card, code)
    if card and code:
        audit.record(db, request, "patient_prescriptions_read", "patient", card,
                     {"item": code, "found": len(found)}, facility_id=fac.id)
        db.commit()
    return render(request, "pharmacy/_rx.html", {"prescriptions": found, "value": prescription_id or None,
                                                 "paper": paper_prescription[:64], "error": None, "warning": None})


@router.post("/{facility}/scan")
def scan_fill(request: Request, facility: str, page: str = "dispense",
              user: User = Depends(require_roles(*STAFF)), db: Session = Depends(deps.read_db),
              values: dict[str, str] = Depends(deps.form_fields)):
    """htmx: the form, filled from its Scan field (or with the scan's problem next to it), typed
    input kept. Records nothing; the form's own submit does. Always 200 so htmx swaps it in."""
    fac = acting(db, user, facility)
    page = page if page in SCAN_PAGES else "dispense"
    values["entry_id"] = form_id(values.get("entry_id"))
    errors: dict[str, str] = {}
    if not values.get("scan", "").strip():
        errors["scan"] = tr(request, MSG_SCAN_EMPTY)
        scanned = False
    else:
        scanned = apply_scan(request, db, values, errors, packs=page == "receipt")
    if page == "receipt":
        return receipt_page(request, fac, values, errors=errors, scanned=scanned)
    if scanned:
        check_scanned_lot(request, db, fac, values, errors)
    return dispense_page(request, db, fac, values, errors=errors, scanned=scanned)


