"""Exact quantities.

Quantities are stored as whole thousandths of the item's base unit in a BIGINT column. SQLite has
no decimal type (SQLAlchemy's Numeric goes through float there), and integers keep sums, CHECK
constraints and comparisons exact on both databases. In Python a quantity is a ``Decimal``.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger
from sqlalchemy.types import TypeDecorator

SCALE = 1000
DIVISIBLE_UNITS = frozenset({"ml", "l", "g", "kg", "mg", "mcg", "iu", "unit"})
"""Base units in which a quantity may have a fractional part (up to three places)."""


def to_milli(value: Decimal | int | str) -> int:
    d = Decimal(value) * SCALE
    if d != d.to_integral_value():
        raise ValueError(f"{value} has more than three decimal places")
    return int(d)


def from_milli(value: int) -> Decimal:
    q = Decimal(value) / SCALE
    return q.quantize(Decimal(1)) if q == q.to_integral_value() else q.normalize()


def unit_allows(unit: str, quantity: Decimal) -> bool:
    """Whether ``quantity`` is expressible in ``unit`` (whole units unless the unit is divisible)."""
    if quantity == quantity.to_integral_value():
        return True
    if unit.strip().lower() not in DIVISIBLE_UNITS:
        return False
    return (quantity * SCALE) == (quantity * SCALE).to_integral_value()


class Quantity(TypeDecorator[Decimal]):
    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else to_milli(value)

    def process_result_value(self, value, dialect):
        return None if value is None else from_milli(int(value))
