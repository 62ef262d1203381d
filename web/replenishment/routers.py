"""Every router of replenishment, for web.app to mount in one place."""

from web.replenishment import api, documents, levels, pack_entry, pages, reconcile

ROUTERS = [api.router, api.packs_router, documents.router, levels.router, reconcile.router, pages.router, pack_entry.router]

__all__ = ["ROUTERS"]
