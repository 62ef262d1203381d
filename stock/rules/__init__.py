"""The ledger's rule book: what makes a movement acceptable, declared once.

Every write path executes these declarations: ``stock.ledger.post`` row by row and
``stock.bulk.post_frame`` column by column (it reads the same tables and calls the same
functions); pages and the API take their field errors from them. Nothing here touches a database:
each rule is a pure function of the values it is handed, so both engines can hand it what they
hold (a row, or a stored entry read back).

Each refusal is a ``Broken`` with a code, the field it is about and an English template with named
placeholders. The templates are module-level ``MSG_`` constants: pybabel extracts them (see
babel.cfg), so a page shows the refusal in its reader's language with
``web.templating.gettext(lang, exc.template, **exc.params)``.
"""

from stock.rules.entry import (  # noqa: F401 - the rule book is read as one
    ADDS,
    Broken,
    EARLIEST_OCCURRED,
    KIND_FORBIDS,
    KIND_NEEDS,
    LATEST_OCCURRED,
    LIMITED,
    MAX_REASON,
    MAX_TEXT,
    MSG_ADJUSTMENT_SIGN,
    MSG_COUNT_SIGN,
    MSG_FORBIDDEN,
    MSG_NEEDS_CARD,
    MSG_NEEDS_COUNTERPARTY,
    MSG_NEEDS_REASON,
    MSG_NOT_A_NUMBER,
    MSG_NOT_WHOLE,
    MSG_NO_ZONE,
    MSG_OUT_OF_RANGE,
    MSG_POSITIVE,
    MSG_REQUIRED,
    MSG_REVERSAL_REASON,
    MSG_TOO_LONG,
    MSG_TRANSFER_TO_ITSELF,
    MSG_UNKNOWN_KIND,
    NEEDS_REASON,
    NEEDS_WORDS,
    NEW_LOT_KINDS,
    REQUIRED,
    ReversalConflict,
    SUBTRACTS,
    TEXTS,
    TRANSFERS,
    divisible,
    fefo_key,
    kind_field_problem,
    reversal_reason_problem,
    shape_problem,
    sign_allows,
    sign_problem,
    signed,
    transfer_problem,
    transfers_to_itself,
    whole_units_problem,
)
from stock.rules.movements import (  # noqa: F401
    CLOCK_SKEW,
    CONTENT,
    DESTRUCTION,
    MSG_ALREADY_REVERSED,
    MSG_COUNT_CANNOT_REVERSE,
    MSG_DUPLICATE,
    MSG_EXPIRED_RECEIPT,
    MSG_EXPIRY_DIFFERS,
    MSG_EXPIRY_REQUIRED,
    MSG_FUTURE,
    MSG_IS_REVERSAL,
    MSG_LATE,
    MSG_NOTHING_TO_REVERSE,
    MSG_NOT_INVERSE_EFFECT,
    MSG_NOT_INVERSE_FACILITY,
    MSG_NOT_INVERSE_ITEM,
    MSG_NOT_INVERSE_LOT,
    MSG_NO_LOT,
    MSG_REVERSES_UNKNOWN,
    MSG_SHORT_REASON,
    Movement,
    SHORT_ON_ARRIVAL,
    content_differences,
    expired_on_receipt,
    expiry_differs,
    future_mask,
    late_mask,
    lot_problem,
    reversal_problem,
    short_arrival_problem,
    short_arrival_reason,
    time_problem,
)
