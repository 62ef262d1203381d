"""The JSON API under /api/v1, for integrations and scripts.

Same access rules as the pages (web.access); errors are ``{"error": {"field": ..., "message": ...}}``.
Authenticate with a personal token (``Authorization: Bearer dawa_pat_...``, from
``dawa users token``) or a logged-in session plus its CSRF token on changes.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.security import HTTPBearer

from web.api import audit, me, patients, stock
from web.api import flags
from web.api import entries  # POST /entries: ledger batches
from web.api import interop  # FHIR bundles, spreadsheet exports
from web.api.schemas import ErrorBody

ERRORS = {400: {"model": ErrorBody, "description": "refused as it stands (e.g. an unsupported version); "
                                                   "`field` names what to change"},
          401: {"model": ErrorBody, "description": "not logged in / bad token"},
          403: {"model": ErrorBody, "description": "outside your role or scope, or missing CSRF token"},
          404: {"model": ErrorBody, "description": "no such thing"},
          422: {"model": ErrorBody, "description": "a parameter is invalid; `field` names it"}}

BEARER = HTTPBearer(auto_error=False, scheme_name="personalToken",
                    description="a personal token from `dawa users token` (`dawa_pat_...`)")
"""Declares the bearer token in the OpenAPI description (clients and Swagger UI learn how to
authenticate). It decides nothing: who is asking is settled by web.middleware before any route."""

router = APIRouter(prefix="/api/v1", responses=ERRORS, dependencies=[Depends(BEARER)])
router.include_router(me.router)
router.include_router(stock.router)
router.include_router(audit.router)
router.include_router(patients.router)
router.include_router(flags.router)
router.include_router(entries.router)
router.include_router(interop.router)

__all__ = ["router"]
