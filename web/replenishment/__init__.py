"""Replenishment in the web app: requisition pages, stock levels, reconciliation, printed documents
and the /api/v1/requisitions API. Both entry points go through ``service`` to the domain
(stock.requisitions); who may take which step is decided in web.access."""
