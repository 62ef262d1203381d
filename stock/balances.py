"""Balances are a cache of the ledger: this module recomputes them and reports drift.

Drift can only come from writes that bypassed the write path (or a bug): the ledger is the truth,
so ``repair`` sets the cache back to it, and the drift report says what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

from stock.models import Balance
from stock.quantities import from_milli

_DRIFT_SQL = """
WITH led AS (
    SELECT facility_id, lot_id, MIN(item_id) AS item_id, SUM(effect) AS total
    FROM ledger_entry GROUP BY facility_id, lot_id
)
SELECT f.code, i.code, l.lot_number, COALESCE(led.total, 0), COALESCE(b.on_hand, 0),
       COALESCE(led.facility_id, b.facility_id), COALESCE(led.lot_id, b.lot_id),
       COALESCE(led.item_id, b.item_id)
FROM led
FULL OUTER JOIN balance b ON b.facility_id = led.facility_id AND b.lot_id = led.lot_id
JOIN facility f ON f.id = COALESCE(led.facility_id, b.facility_id)
JOIN lot l ON l.id = COALESCE(led.lot_id, b.lot_id)
JOIN item i ON i.id = l.item_id
WHERE COALESCE(led.total, 0) <> COALESCE(b.on_hand, 0)
ORDER BY f.code, i.code, l.lot_number
"""


@dataclass(frozen=True)
class Drift:
    facility_code: str
    item_code: str
    lot_number: str
    ledger: Decimal
    balance: Decimal
    facility_id: int
    lot_id: int
    item_id: int

    def __str__(self) -> str:
        lot = self.lot_number or "(untracked)"
        return (f"{self.facility_code} {self.item_code} lot {lot}: ledger says {self.ledger}, "
                f"balance says {self.balance} (drift {self.balance - self.ledger})")


def drift(session: Session) -> list[Drift]:
    """Every (facility, lot) whose cached balance differs from the sum of its ledger effects.
    SQLite has had FULL OUTER JOIN since 3.39."""
    rows = session.execute(text(_DRIFT_SQL))
    return [Drift(fc, ic, ln, from_milli(int(t)), from_milli(int(b)), fid, lid, iid)
            for fc, ic, ln, t, b, fid, lid, iid in rows]


def repair(session: Session, drifts: list[Drift]) -> None:
    """Set each drifted balance back to the ledger's sum (in the caller's transaction)."""
    for d in drifts:
        bal = session.get(Balance, (d.facility_id, d.lot_id))
        if bal is None:
            session.add(Balance(facility_id=d.facility_id, lot_id=d.lot_id, item_id=d.item_id,
                                on_hand=d.ledger))
        else:
            bal.on_hand = d.ledger
    session.flush()
