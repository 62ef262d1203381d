"""Replenishment: stock levels, requisitions prepared from the ledger, approval, fulfilment and
proof of delivery, and their reconciliation.

Stock moves only through ``stock.ledger.post``: fulfilment posts transfer_out entries at the
supplying store, a proof of delivery posts transfer_in (and a loss for what arrived damaged) at the
requesting facility. The tables here record what was asked, approved, shipped and received, and
who did what when; they never hold a quantity the ledger could not show.
"""
