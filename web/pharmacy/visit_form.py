"""A visit's form read and checked: the health card once, then lines of items, each with its
quantity split across lots by the rule book (stock.rules.allocation: first expiry first, expired
lots never proposed) or as the pharmacist changed the split. Nothing here writes; web.pharmacy.visit
posts what this plans.

Field names: ``health_card_id``, ``visit_id``, ``lines`` (how many lines the form shows), and per
line ``l<i>_item``, ``l<i>_quantity``, ``l<i>_prescription``, ``l<i>_paper``, ``l<i>_reason``,
``l<i>_scan`` (with ``l<i>_scan_gtin``, ``l<i>_serial``, ``l<i>_scan_lot`` kept from a scan) and the
split: ``l<i>_split_for`` (the quantity it was proposed for), ``l<i>_lot<k>`` and ``l<i>_take<k>``.
A problem is keyed by the field it is about, ``l<i>_<field>``, so the page shows it on its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from fastapi import Request
from sqlalchemy.orm import Session

from stock import errors as domain
from stock import gs1, rules
from stock.masterdata import item_by_gtin
from stock.models import Facility, Item
from stock.rules.allocation import LotChoice, Take
from web.pharmacy import queries as q
from web.pharmacy.scan import scan_message
from web.pharmacy.shared import (
    MSG_REQUIRED, MSG_SCAN_OTHER_ITEM, MSG_SCAN_UNKNOWN_GTIN, MSG_UNKNOWN_ITEM, parse_quantity, tr,
)

MIN_LINES = 4
"""Lines the form shows at least."""
MAX_LINES = 20
MAX_LOTS = 12
"""Lots a line may be split across (the done page looks for at most MAX_LINES x MAX_LOTS entries)."""

MSG_NO_LINES = "Add at least one item to the visit."
MSG_TOO_MANY_LOTS = "A line can take from at most %(max)s lots."

VISIT_ID = re.compile(r"[^A-Za-z0-9-]")


def visit_id_of(value: str | None, fresh: str) -> str:
    """The form's visit id, kept to letters, digits and hyphens (it begins every entry id)."""
    text = VISIT_ID.sub("", value or "")[:40]
    return text or fresh


def entry_id(visit_id: str, seq: int, k: int) -> str:
    """The entry of a visit's ``seq``-th line taken from its ``k``-th lot: the same on every retry."""
    return f"{visit_id}-{seq}-{k}"


def line_count(values: dict) -> int:
    try:
        shown = int(values.get("lines") or 0)
    except ValueError:
        shown = 0
    used = [int(m.group(1)) for key in values if (m := re.match(r"l(\d+)_", key))]
    return max(MIN_LINES, min(MAX_LINES, max([shown, *used]) if used else shown))


@dataclass
class LineInput:
    """One line as posted."""

    index: int
    values: dict

    def get(self, name: str) -> str:
        return (self.values.get(f"l{self.index}_{name}") or "").strip()

    def key(self, name: str) -> str:
        return f"l{self.index}_{name}"

    @property
    def blank(self) -> bool:
        return not self.get("item") and not self.get("quantity")

    def chosen(self) -> list[tuple[int, str, str]]:
        """(k, lot number, take text) of the split shown with the form."""
        found = []
        for k in range(1, MAX_LOTS + 1):
            lot_key = f"l{self.index}_lot{k}"
            if lot_key not in self.values:
                continue
            found.append((k, self.values[lot_key].strip(), (self.values.get(f"l{self.index}_take{k}") or "").strip()))
        return found


def read_lines(values: dict) -> list[LineInput]:
    return [LineInput(i, values) for i in range(1, line_count(values) + 1)]


@dataclass
class PlannedLine:
    """A line ready to post: its item, quantity and the lots it takes from."""

    line: LineInput
    seq: int
    item: Item
    quantity: Decimal
    takes: list[Take]
    serial: str | None = None
    overridden: bool = False


@dataclass
class Plan:
    card: str
    lines: list[PlannedLine] = field(default_factory=list)
    errors: dict = field(default_factory=dict)


def apply_scans(request: Request, db: Session, values: dict) -> tuple[bool, dict]:
    """Fill each line whose Scan field holds a code: item, and the pack's lot, GTIN and serial kept
    in hidden fields. True when a scan was read (the form then comes back filled, recording nothing)."""
    errors, scanned = {}, False
    for line in read_lines(values):
        text = line.get("scan")
        if not text:
            continue
        scanned = True
        try:
            scan = gs1.parse_scan(text)
        except domain.BadScan as exc:
            errors[line.key("scan")] = scan_message(request, exc)
            continue
        item = item_by_gtin(db, scan.gtin)
        if item is None:
            errors[line.key("scan")] = tr(request, MSG_SCAN_UNKNOWN_GTIN, gtin=scan.gtin)
            continue
        values.update({line.key("item"): item.code, line.key("scan_gtin"): scan.gtin, line.key("scan"): "",
                       line.key("serial"): scan.serial_number or "", line.key("scan_lot"): scan.lot_number or ""})
    return scanned, errors


def proposal(lots: list[LotChoice], quantity: Decimal, today: date, first_lot: str = "") -> list[Take]:
    """The rule book's FEFO split, a scanned pack's lot (in hand) taken from first when usable."""
    first = [c for c in rules.usable(lots, today) if first_lot and c.lot_number == first_lot]
    if not first:
        return rules.fefo_split(lots, quantity, today)
    head = min(first[0].on_hand, quantity)
    takes = [Take(first[0].lot_number, first[0].expiry_date, head)]
    if head < quantity:
        rest = [c for c in lots if c.lot_number != first_lot]
        takes += rules.fefo_split(rest, quantity - head, today)
    return takes


def _less(lots: list[LotChoice], taken: dict[str, Decimal]) -> list[LotChoice]:
    """The lots, less what earlier lines of the visit take from them."""
    return [LotChoice(c.lot_number, c.expiry_date, c.on_hand - taken.get(c.lot_number, 0), c.expired) for c in lots]


def plan(request: Request, db: Session, fac: Facility, values: dict, today: date) -> Plan:
    """Every line checked and split; problems keyed by their line's field."""
    out = Plan(card=(values.get("health_card_id") or "").strip())
    if not out.card:
        out.errors["health_card_id"] = tr(request, MSG_REQUIRED)
    filled = [line for line in read_lines(values) if not line.blank]
    if not filled:
        out.errors["_form"] = tr(request, MSG_NO_LINES)
    items = q.items_by_code(db, {line.get("item") for line in filled})
    taken: dict[str, dict[str, Decimal]] = {}
    for seq, line in enumerate(filled, start=1):
        planned = _plan_line(request, db, fac, line, seq, items, taken, today, out.errors)
        if planned is not None:
            out.lines.append(planned)
            for t in planned.takes:
                lots = taken.setdefault(planned.item.code, {})
                lots[t.lot_number] = lots.get(t.lot_number, 0) + t.quantity
    return out


def _plan_line(request, db, fac, line: LineInput, seq: int, items: dict, taken: dict, today: date,
               errors: dict) -> PlannedLine | None:
    code = line.get("item")
    item = items.get(code)
    if not code:
        errors[line.key("item")] = tr(request, MSG_REQUIRED)
    elif item is None:
        errors[line.key("item")] = tr(request, MSG_UNKNOWN_ITEM, code=code)
    quantity = parse_quantity(request, line.get("quantity"), errors, line.key("quantity"))
    if item is None or quantity is None:
        return None
    serial = line.get("serial") or None
    if serial and line.get("scan_gtin") and item.gtin != line.get("scan_gtin"):
        errors[line.key("scan")] = tr(request, MSG_SCAN_OTHER_ITEM, scanned=line.get("scan_gtin"), code=item.code)
        return None
    lots = _less(q.fefo_lots(db, fac, item.code, today), taken.get(item.code, {}))
    chosen = line.chosen()
    overridden = bool(chosen) and line.get("split_for") == line.get("quantity")
    try:
        if overridden:
            takes = _override(request, line, lots, chosen, quantity, today, errors)
            if takes is None:
                return None
        else:
            takes = proposal(lots, quantity, today, line.get("scan_lot"))
    except rules.Broken as exc:
        errors[line.key("quantity" if exc.field == "quantity" else "lots")] = tr(request, exc.template, **exc.params)
        return None
    if len(takes) > MAX_LOTS:
        errors[line.key("quantity")] = tr(request, MSG_TOO_MANY_LOTS, max=MAX_LOTS)
        return None
    return PlannedLine(line, seq, item, quantity, takes, serial, overridden)


def _zero(text: str) -> bool:
    try:
        return Decimal(text.replace(",", ".").replace(" ", "")) == 0
    except InvalidOperation:
        return False


def _override(request, line: LineInput, lots: list[LotChoice], chosen: list, quantity: Decimal, today: date,
              errors: dict) -> list[Take] | None:
    """The split as the pharmacist set it (blank or zero parts left out), checked by the rule book."""
    parts, bad = [], False
    for k, lot_number, text in chosen:
        if not text or _zero(text):
            continue
        value = parse_quantity(request, text, errors, line.key(f"take{k}"))
        if value is None:
            bad = True
        elif value > 0:
            parts.append((lot_number, value))
    if bad:
        return None
    problem = rules.override_problem(lots, parts, quantity, today)
    if problem is not None:
        raise problem
    expiry = {c.lot_number: c.expiry_date for c in lots}
    return [Take(lot, expiry.get(lot), value) for lot, value in parts]
