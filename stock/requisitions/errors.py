"""Replenishment's domain errors; the web layer words them for the API and the pages."""

from __future__ import annotations

from stock.errors import DawaError, InvalidEntry


class UnknownRequisition(DawaError):
    field = "requisition"


class WrongState(DawaError):
    """The requisition is not in a state that allows this step (e.g. approving a draft)."""

    field = "status"

    def __init__(self, message: str, *, status: str, action: str):
        super().__init__(message)
        self.status = status
        self.action = action


class RequisitionExists(DawaError):
    """A regular requisition for this facility and period was prepared already."""

    field = "period"


class InvalidLine(InvalidEntry):
    """A line's quantity or reason is wrong; ``item_code`` names the line."""

    def __init__(self, message: str, *, field: str, item_code: str):
        super().__init__(message, field=field)
        self.item_code = item_code


__all__ = ["UnknownRequisition", "WrongState", "RequisitionExists", "InvalidLine"]
