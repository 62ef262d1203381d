"""The reconciliation page and its CSV: requested, approved, shipped and received per requisition
line, for the facilities in the reader's scope (or one of them), one period or all; with only the
gaps on request (approved and never shipped, shipped and never received, damaged)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from stock.models import User
from stock.requisitions.reconcile import HEADER, reconciliation
from web import deps
from web.access import current_user, facility_in_scope, visible_facilities, visible_facility_ids
from web.interop.spreadsheets import MEDIA_TYPES, Sheet, to_csv
from web.templating import render

router = APIRouter(include_in_schema=False)

PAGE = 100
"""Lines per page on screen; the CSV holds them all."""


def _lines(db: Session, user: User, facility: str, period: str, gaps: str, **page):
    ids = [facility_in_scope(db, user, facility.strip()).id] if facility.strip() else visible_facility_ids(db, user)
    return reconciliation(db, ids, period=period.strip() or None, gaps_only=gaps == "1", **page)


@router.get("/reconciliation")
def page(request: Request, facility: str = "", period: str = "", gaps: str = "", start: int = Query(0, ge=0, le=2**31),
         user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    lines = _lines(db, user, facility, period, gaps, limit=PAGE + 1, offset=start)
    values = {"facility": facility.strip(), "period": period.strip(), "gaps": gaps}
    return render(request, "replenishment/reconciliation.html", {
        "lines": lines[:PAGE], "facilities": visible_facilities(db, user), "values": values,
        "next_start": start + PAGE if len(lines) > PAGE else None, "start": start, "page": PAGE,
        "query": urlencode({k: v for k, v in values.items() if v})})


@router.get("/reconciliation/export")
def export(request: Request, facility: str = "", period: str = "", gaps: str = "",
           user: User = Depends(current_user), db: Session = Depends(deps.read_db)):
    sheet = Sheet("Reconciliation", HEADER, [line.row() for line in _lines(db, user, facility, period, gaps)])
    name = "-".join(p for p in ("reconciliation", facility.strip(), period.strip()) if p)
    return Response(to_csv(sheet).encode("utf-8"), media_type=MEDIA_TYPES["csv"],
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


__all__ = ["router"]
