"""Printed documents as PDF: the requisition, the waybill (packing list) for the driver, a blank
count sheet for a blind count, and an item's stock card for the wall.

Each is an HTML template rendered like a page (the reader's language, right-to-left for Arabic)
and laid out by WeasyPrint, whose text shaping (Pango/HarfBuzz) joins Arabic letters correctly.
A stock card names no patient: it is pinned where anyone can read it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from stock.models import User
from stock.queries import on_hand, stock_card
from stock.requisitions import flow
from stock.requisitions.fulfil import shipments
from web import deps
from web.access import MANAGERS, MSG_UNKNOWN_ITEM, NotFound, STAFF, current_user, facility_in_scope, require_roles
from web.replenishment.service import load
from web.templating import render

router = APIRouter(include_in_schema=False)

REQUISITION_DOCUMENTS = ("requisition", "waybill")


def to_pdf(request: Request, template: str, context: dict) -> bytes:
    from weasyprint import HTML  # imported on first use: it loads Pango, which pages never need

    html = render(request, template, {"printed_at": datetime.now(timezone.utc), **context}).body.decode("utf-8")
    return HTML(string=html).write_pdf()


def _pdf(body: bytes, filename: str) -> Response:
    return Response(body, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/requisitions/{number}/pdf/{document}")
def requisition_pdf(request: Request, number: str, document: str, user: User = Depends(current_user),
                    db: Session = Depends(deps.read_db)):
    held = load(db, user, number)
    if document not in REQUISITION_DOCUMENTS or (document == "waybill" and not held.req.waybill):
        raise NotFound("no such document")
    body = to_pdf(request, f"replenishment/pdf/{document}.html", {
        "r": held.req, "facility": held.facility, "supplier": held.supplier,
        "lines": flow.lines(db, held.req), "shipments": shipments(db, held.req)})
    return _pdf(body, f"{document}-{number}.pdf")


@router.get("/stock/{facility}/count-sheet")
def count_sheet(request: Request, facility: str, user: User = Depends(require_roles(*STAFF)),
                db: Session = Depends(deps.read_db)):
    """Every lot held here with an empty box to write the count in: no book quantity (a blind count)."""
    fac = facility_in_scope(db, user, facility)
    lots = on_hand(db, facility_code=fac.code)
    return _pdf(to_pdf(request, "replenishment/pdf/count_sheet.html", {"facility": fac, "lots": lots}),
                f"count-sheet-{fac.code}.pdf")


@router.get("/stock/{facility}/card/{item}/pdf")
def card_pdf(request: Request, facility: str, item: str, user: User = Depends(require_roles(*MANAGERS)),
             db: Session = Depends(deps.read_db)):
    from stock.errors import UnknownItem
    from stock.masterdata import item_by_code

    fac = facility_in_scope(db, user, facility)
    try:
        it = item_by_code(db, item.strip())
    except UnknownItem:
        raise NotFound(MSG_UNKNOWN_ITEM, field="item", params={"item": item.strip()}) from None
    card = stock_card(db, fac.code, it.code)
    return _pdf(to_pdf(request, "replenishment/pdf/stock_card.html", {"facility": fac, "item": it, "card": card}),
                f"stock-card-{fac.code}-{it.code}.pdf")


__all__ = ["router", "to_pdf"]
