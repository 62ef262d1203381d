"""Physical counts that come up short of the book.

A count is the one moment the shelf is compared with the ledger. A unit or two out either way is
the noise of counting (a blister miscounted, a bottle half used); stock that is gone beyond that,
with no loss, transfer or dispensing recorded for it, left the shelf unrecorded. Each short count
is one flag about the facility's item, with the count entry as evidence.
"""

from __future__ import annotations

import numpy as np

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from stock.messages import code, day, join, msg, num, pct
from stock.messages import qty as quantity

NAME = "counts"


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    c = frames.of_kind("count")
    c = c[c["book_quantity"].notna()]
    if c.empty:
        return []
    c = c.assign(shortfall=c["book_quantity"] - c["quantity"],
                 tolerance=np.maximum(s.count_tolerance_units, s.count_tolerance_share * c["book_quantity"]))
    short = c[c["shortfall"] > c["tolerance"]]
    hits: list[Hit] = []
    for row in short.sort_values("seq").itertuples():
        share = row.shortfall / row.book_quantity
        # How far past the tolerance, as a share of the book: 30% of a shelf gone is near-certain.
        score = squash((row.shortfall - row.tolerance) / row.book_quantity, half=0.1, floor=0.5, ceiling=0.97)
        lot = msg(", lot %(lot)s", lot=code(row.lot_number)) if row.lot_number else join([])
        hits.append(Hit(
            NAME, "facility_item", f"{row.facility_code}:{row.item_code}", row.facility_code, (row.entry_id,),
            score,
            msg("Count of %(qty)s against %(book)s on the books: %(short)s (%(share)s) missing at %(facility)s on "
                "%(date)s (%(item)s%(lot)s), recorded by %(user)s.", qty=quantity(row.quantity, row.unit),
                book=num(row.book_quantity), short=num(row.shortfall), share=pct(round(share, 2)),
                facility=code(row.facility_code), date=day(row.local_date), item=code(row.item_name), lot=lot,
                user=code(row.recorded_by)),
            {"book": row.book_quantity, "counted": row.quantity, "shortfall": row.shortfall,
             "share": round(share, 4), "lot": row.lot_number},
        ))
    return hits
