"""Domain errors of the ledger.

Each carries the field it is about and a message a person can act on; the import, the CLI and the
web layer turn them into ``file:line: column: message`` lines, error bodies or form errors.
"""

from __future__ import annotations

from decimal import Decimal


class DawaError(Exception):
    """Base of every expected error: something the person in front of the screen can fix."""

    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None, entry_id: str | None = None):
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field
        self.entry_id = entry_id

    def __str__(self) -> str:
        return self.message


class InvalidEntry(DawaError):
    """A value missing, of the wrong type, or outside its domain."""


class BadScan(InvalidEntry):
    """A scanned or typed barcode that cannot be used. ``problem`` says which way, for a page to
    word it in the reader's language: ``empty``, ``unreadable``, ``no_gtin`` or ``check_digit``;
    ``gtin`` is the GTIN concerned, when there is one."""

    field = "scan"

    def __init__(self, message: str, *, problem: str, gtin: str | None = None):
        super().__init__(message)
        self.problem = problem
        self.gtin = gtin


class UnknownFacility(DawaError):
    field = "facility_code"


class UnknownItem(DawaError):
    field = "item_code"


class UnknownCounterparty(DawaError):
    field = "counterparty_code"


class UnknownEntry(DawaError):
    field = "entry_id"


class EntryConflict(DawaError):
    """The entry_id was posted before with different content."""

    field = "entry_id"

    def __init__(self, entry_id: str, differences: dict[str, tuple[object, object]]):
        if "facility_code" in differences:
            # The id is taken at another facility, which the sender may have no right to see:
            # the message says so and nothing of what is stored there (patient, quantity, user).
            message = (f"entry {entry_id} was already recorded at another facility; "
                       "give this movement an entry_id of its own")
        else:
            parts = ", ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in sorted(differences.items()))
            message = f"entry {entry_id} was already recorded with different content ({parts})"
        super().__init__(message, entry_id=entry_id)
        self.differences = differences


class AlreadyReversed(DawaError):
    field = "reverses"


class InsufficientStock(DawaError):
    """The movement would take a lot below zero."""

    field = "quantity"

    def __init__(
        self,
        *,
        facility: str,
        item: str,
        lot: str,
        on_hand: Decimal,
        asked: Decimal,
        entry_id: str | None = None,
    ):
        lot_text = f"lot {lot}" if lot else "the untracked lot"
        super().__init__(
            f"insufficient stock of {item} {lot_text} at {facility}: on hand {on_hand}, asked {asked}",
            entry_id=entry_id,
        )
        self.facility, self.item, self.lot = facility, item, lot
        self.on_hand, self.asked = on_hand, asked
