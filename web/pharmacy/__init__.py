"""Pages for pharmacy staff: the counter's visit, dispense, receipt, transfer send and receive,
loss, count sheet, and today's entries with reversal; one module a feature, their reads in
web.pharmacy.queries, what they share in web.pharmacy.shared.

Every page acts on one facility, named in the path. A pharmacist's scope is their own facility; a
facility manager or an admin with a wider scope picks one from /pharmacy. web.access decides: a
facility outside the user's scope is refused before anything is read. Movements go through the
ledger's one write path (stock.ledger.post / reverse), each with an audit record in the same
transaction.

Every form carries an entry_id (a UUID; a visit, a visit_id) made when the form is drawn, so a
double click or a retry after a timeout records the movement once. A form with a problem comes
back with the typed input kept and the problem next to its field. A dispense that breaks a policy
(expired lot, patient not in the register, over the prescription...) is not refused: the page
warns and asks for a reason, and a second submit with the reason records it with the entry.
"""

from fastapi import APIRouter

from web.pharmacy import count, dispense, loss, pieces, receipt, today, transfers, visit
from web.pharmacy.queries import count_sheet, fefo_lots, held_items, in_transit, open_prescriptions
from web.pharmacy.shared import masked_card

router = APIRouter()
for _module in (pieces, visit, dispense, receipt, transfers, loss, count, today):
    router.include_router(_module.router)

__all__ = ["router", "fefo_lots", "held_items", "open_prescriptions", "in_transit", "count_sheet", "masked_card"]
