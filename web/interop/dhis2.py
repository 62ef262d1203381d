"""Monthly stock figures as a DHIS2 dataValueSets payload (JSON).

Most ministries collect logistics data in DHIS2: for each facility (org unit), item and month, the
stock on hand at month end, the consumption, the days out of stock and the other figures of a
monthly report. Dawa takes them from two sources and maps them to the ministry's own data elements,
category option combos and org units through a mapping file (``web.interop.dhis2_mapping``):

- the ledger, for facilities that record their movements in Dawa: stock on hand, consumption and
  stockout days, computed as below;
- the monthly stock reports facilities submit (the latest revision of each), for every figure they
  hold: opening, received, consumption, adjustment, closing (stock on hand), stockout days, ordered.

Where both give a figure, the ledger's is sent (it is the evidence), and a difference between the
two is a warning, as are two measures mapped to the same data element. A measure mapped to a bare
data element uses DHIS2's default category option combo. Nothing is dropped silently: facilities
and items that have data but no mapping, items lacking a measure, and mapped codes that Dawa does
not know are all listed beside the payload.

How each figure is computed, per facility and item, over the calendar month in the facility's own
zone (``Facility.timezone``, else ``DAWA_DEFAULT_TIMEZONE``):

- stock on hand: the sum of the ledger's effects on stock of every movement before the month's end;
- consumption: the quantity dispensed in the month, less dispensing that a later entry reversed
  (the same rule as the average monthly consumption in ``stock.queries.stock_positions``);
- stockout days: days of the month that ended with nothing in stock, counted from the first day
  the facility ever held the item and only for days that are over.

Only facility-items with a movement before the month's end, or a monthly report of the month, are
reported.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, String, case, func, select, type_coerce
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.models import Balance, Facility, Item, LedgerEntry, StockReport
from stock.quantities import from_milli
from web.interop.dhis2_mapping import MEASURES, Mapping, MappingError, Target, load_mapping, parse_mapping

PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
REPORT_FIGURES = {"stock_on_hand": "closing", "consumption": "consumed", "stockout_days": "stockout_days",
                  "opening": "opening", "received": "received", "adjustment": "adjustment", "ordered": "ordered"}
"""Each measure as the monthly report's column that holds it."""
LEDGER_MEASURES = ("stock_on_hand", "consumption", "stockout_days")


@dataclass(frozen=True)
class MonthlyAggregate:
    facility_code: str
    item_code: str
    stock_on_hand: Decimal
    consumption: Decimal
    stockout_days: int


def parse_period(period: str) -> tuple[int, int]:
    m = PERIOD.fullmatch(period or "")
    if not m:
        raise InvalidEntry(f"period {period!r} must be a month as YYYY-MM", field="period")
    return int(m.group(1)), int(m.group(2))


def _month_bounds(year: int, month: int, zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(zone)
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _milli(column):
    """A quantity column read as the thousandths it is stored in: no Decimal per row."""
    return type_coerce(column, BigInteger)


def monthly_aggregates(session: Session, period: str, *, default_zone: str, now: datetime | None = None,
                       facility_codes: Collection[str] | None = None) -> list[MonthlyAggregate]:
    """Stock on hand at month end, consumption and stockout days per facility and item, for every
    facility or only those in ``facility_codes``. A facility's month is in its own time zone, else
    in ``default_zone`` (the install's ``default_timezone``)."""
    year, month = parse_period(period)
    now = now or datetime.now(timezone.utc)
    stmt = select(Facility.id, Facility.code, Facility.timezone)
    if facility_codes is not None:
        stmt = stmt.where(Facility.code.in_(sorted(facility_codes)))
    zones: dict[str, list[int]] = defaultdict(list)
    codes: dict[int, str] = {}
    for fid, code, zone in session.execute(stmt):
        zones[zone or default_zone].append(fid)
        codes[fid] = code
    items = dict(session.execute(select(Item.id, Item.code)).all())
    out: list[MonthlyAggregate] = []
    for zone, fids in zones.items():
        t0, t1 = _month_bounds(year, month, zone)
        tz = ZoneInfo(zone)
        first_day = date(year, month, 1)
        days = [first_day + timedelta(days=n) for n in range((t1.astimezone(tz).date() - first_day).days)]
        # Local midnights that end each day, as instants: the days that are over are the first ones.
        ends = [datetime(d.year, d.month, d.day, tzinfo=tz) + timedelta(days=1) for d in days]
        ended = sum(1 for end in ends if end <= now)
        month_rows = _month_moves(session, fids, sorted(items), t0, t1, ends[:-1])
        opening = _openings(session, fids, t0, t1, month_rows)
        for key in sorted(opening.keys() | month_rows.keys(), key=lambda k: (codes[k[0]], items[k[1]])):
            balance, held_before = opening.get(key, (0, False))
            used, change, first = month_rows.get(key) or (0, (), 0)
            # Days count as stocked out only from the first the facility held the item.
            held_from = 0 if held_before else first
            out_days = 0
            if change:
                for n, closing in enumerate(accumulate(change, initial=balance)):
                    if n > held_from and n <= ended and closing <= 0:   # closing of day n - 1
                        out_days += 1
                balance = closing
            elif balance <= 0:
                out_days = max(0, ended - held_from)
            out.append(MonthlyAggregate(codes[key[0]], items[key[1]], _plain(from_milli(balance)),
                                        _plain(from_milli(used)), out_days))
    out.sort(key=lambda a: (a.facility_code, a.item_code))
    return out


def _month_moves(session: Session, fids: list[int], item_ids: list[int], t0: datetime, t1: datetime,
                 day_ends: list[datetime]) -> dict[tuple[int, int], list]:
    """The month's movements per facility-item: [consumption, the change to stock on each day, the
    first day with a movement], days as indexes into the month, quantities in thousandths.

    Times are read as the driver returns them (the stored text on SQLite, a timestamp on
    PostgreSQL) and placed among the month's local midnights written the same way, which orders
    them as the database does: no time is converted per row."""
    occurred = LedgerEntry.occurred_at
    dialect = session.get_bind().dialect
    to_db = occurred.type.dialect_impl(dialect).bind_processor(dialect) or (lambda moment: moment)
    keys = [to_db(end) for end in day_ends]
    # Every item named, though it filters nothing: with facility and item both given, the month is
    # a range of ix_ledger_entry_facility_item_occurred per pair, where a facility alone would have
    # SQLite read all of its entries to find the month's.
    in_month = (LedgerEntry.facility_id.in_(fids), LedgerEntry.item_id.in_(item_ids), occurred >= t0, occurred < t1)
    dispensed = case((LedgerEntry.kind == "dispense", _milli(LedgerEntry.quantity)), else_=0)
    conn = session.connection()
    out: dict[tuple[int, int], list] = {}
    n_days = len(keys) + 1
    for fid, iid, at, used, effect in conn.execute(
            select(LedgerEntry.facility_id, LedgerEntry.item_id, type_coerce(occurred, String), dispensed,
                   _milli(LedgerEntry.effect)).where(*in_month)):
        day = bisect_right(keys, at)
        g = out.get((fid, iid))
        if g is None:
            g = out[(fid, iid)] = [used, [0] * n_days, day]
        else:
            g[0] += used
            if day < g[2]:
                g[2] = day
        g[1][day] += effect
    # Consumption leaves out dispensing that a later entry reversed.
    reversed_ids = select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))
    for fid, iid, quantity in conn.execute(
            select(LedgerEntry.facility_id, LedgerEntry.item_id, _milli(LedgerEntry.quantity))
            .where(LedgerEntry.entry_id.in_(reversed_ids), LedgerEntry.kind == "dispense", *in_month)):
        out[(fid, iid)][0] -= quantity
    return out


def _openings(session: Session, fids: list[int], t0: datetime, t1: datetime,
              month: dict[tuple[int, int], list]) -> dict[tuple[int, int], tuple[int, bool]]:
    """Stock on hand at the month's start per facility-item that had a movement before it, in
    thousandths, with True (it was held before the month).

    Whichever side of the month holds fewer entries is read: the sum of every entry before it, or
    the stock on hand now (the balance table, the ledger's running total kept in the same
    transaction as every entry, as ``stock.requisitions.figures`` reads it) less the month's
    movements and those after it. Summing the whole history before every month read, for a
    recent month, most of the ledger. Which side is smaller is asked of the recording-time index
    (a count of index entries, no rows read); either way the figure is the same."""
    recorded = LedgerEntry.recorded_at
    earlier = session.scalar(select(func.count()).where(recorded < t0))
    later = session.scalar(select(func.count()).where(recorded >= t1))
    if earlier <= later:
        rows = session.execute(
            select(LedgerEntry.facility_id, LedgerEntry.item_id, func.sum(_milli(LedgerEntry.effect)))
            .where(LedgerEntry.facility_id.in_(fids), LedgerEntry.occurred_at < t0)
            .group_by(LedgerEntry.facility_id, LedgerEntry.item_id))
        return {(f, i): (q or 0, True) for f, i, q in rows}
    since = dict(((f, i), q) for f, i, q in session.execute(
        select(LedgerEntry.facility_id, LedgerEntry.item_id, func.sum(_milli(LedgerEntry.effect)))
        .where(LedgerEntry.facility_id.in_(fids), LedgerEntry.occurred_at >= t1)
        .group_by(LedgerEntry.facility_id, LedgerEntry.item_id)))
    before = (select(LedgerEntry.id)
              .where(LedgerEntry.facility_id == Balance.facility_id, LedgerEntry.item_id == Balance.item_id,
                     LedgerEntry.occurred_at < t0)
              .limit(1).correlate(Balance).exists())
    out = {}
    for f, i, on_hand, held in session.execute(
            select(Balance.facility_id, Balance.item_id, func.sum(_milli(Balance.on_hand)), before)
            .where(Balance.facility_id.in_(fids)).group_by(Balance.facility_id, Balance.item_id)):
        if held:
            g = month.get((f, i))
            out[(f, i)] = (on_hand - (since.get((f, i)) or 0) - (sum(g[1]) if g else 0), True)
    return out


def _plain(value: Decimal) -> Decimal:
    value = Decimal(value)
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


@dataclass
class Dhis2Export:
    payload: dict
    aggregates: list[MonthlyAggregate]
    unmapped_facilities: list[str] = field(default_factory=list)
    unmapped_items: list[str] = field(default_factory=list)
    missing_measures: list[str] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)
    collisions: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """What was left out of the payload, or may not land as meant, and why: one line each."""
        out = [f"facility {c} has data but no org unit in the mapping: its values are not sent"
               for c in self.unmapped_facilities]
        out += [f"item {c} has data but no data elements in the mapping: its values are not sent"
                for c in self.unmapped_items]
        out += self.missing_measures
        out += self.unknown_codes
        out += self.collisions
        out += self.disagreements
        return out

    def to_json(self) -> str:
        return json.dumps(self.payload, ensure_ascii=False, indent=1) + "\n"


def monthly_reports(session: Session, period: str, facility_codes: Collection[str] | None = None
                    ) -> dict[tuple[str, str], StockReport]:
    """The latest revision of each facility's monthly report of ``period``, by (facility, item)."""
    parse_period(period)
    stmt = (select(StockReport, Facility.code, Item.code)
            .join(Facility, Facility.id == StockReport.facility_id).join(Item, Item.id == StockReport.item_id)
            .where(StockReport.period == period).order_by(StockReport.revision))
    if facility_codes is not None:
        stmt = stmt.where(Facility.code.in_(sorted(facility_codes)))
    return {(fac, item): report for report, fac, item in session.execute(stmt)}


def _figures(ledger: MonthlyAggregate | None, report: StockReport | None, where: str,
             disagreements: list[str]) -> dict[str, Decimal | int]:
    out: dict[str, Decimal | int] = {}
    if report is not None:
        for measure, column in REPORT_FIGURES.items():
            value = getattr(report, column)
            if value is not None:
                out[measure] = _plain(value) if isinstance(value, Decimal) else value
    if ledger is not None:
        for measure in LEDGER_MEASURES:
            value = getattr(ledger, measure)
            if measure in out and out[measure] != value:
                disagreements.append(f"{where}: {measure} is {value} by the ledger and {out[measure]} by the "
                                     "monthly report; the ledger's is sent")
            out[measure] = value
    return out


def export_data_value_set(session: Session, mapping: Mapping, period: str, *, default_zone: str,
                          now: datetime | None = None,
                          facility_codes: Collection[str] | None = None) -> Dhis2Export:
    """The month's figures, from the ledger and the monthly reports, as a dataValueSets payload,
    with everything unmapped, colliding or disagreeing listed.

    With ``facility_codes`` only those facilities are sent, and the mapping's other org units are
    neither used nor named in the warnings (a scoped user learns nothing of other facilities)."""
    year, month = parse_period(period)
    if facility_codes is not None:
        mapping = replace(mapping, org_units={c: u for c, u in mapping.org_units.items() if c in facility_codes})
    aggregates = monthly_aggregates(session, period, default_zone=default_zone, now=now,
                                    facility_codes=facility_codes)
    reports = monthly_reports(session, period, facility_codes)
    ledger = {(a.facility_code, a.item_code): a for a in aggregates}
    result = Dhis2Export(payload={}, aggregates=aggregates, collisions=mapping.collisions())
    values: list[dict] = []
    unmapped_fac: set[str] = set()
    unmapped_item: set[str] = set()
    missing: set[tuple[str, str]] = set()
    dhis_period = f"{year:04d}{month:02d}"
    for fac, item in sorted(set(ledger) | set(reports)):
        org_unit = mapping.org_units.get(fac)
        if org_unit is None:
            unmapped_fac.add(fac)
            continue
        targets = mapping.items.get(item)
        if targets is None:
            unmapped_item.add(item)
            continue
        figures = _figures(ledger.get((fac, item)), reports.get((fac, item)), f"{fac} {item} {period}",
                           result.disagreements)
        for measure in MEASURES:
            if measure not in figures:
                continue
            target = targets.get(measure)
            if target is None:
                missing.add((item, measure))
                continue
            value = {"dataElement": target.data_element, "period": dhis_period, "orgUnit": org_unit,
                     "value": str(figures[measure])}
            if target.category_option_combo:
                value["categoryOptionCombo"] = target.category_option_combo
            if mapping.attribute_option_combo:
                value["attributeOptionCombo"] = mapping.attribute_option_combo
            values.append(value)
    result.unmapped_facilities = sorted(unmapped_fac)
    result.unmapped_items = sorted(unmapped_item)
    result.missing_measures = [f"item {i} has no data element for {m}: that value is not sent"
                               for i, m in sorted(missing)]
    known_fac = set(session.scalars(select(Facility.code)))
    known_items = set(session.scalars(select(Item.code)))
    result.unknown_codes = (
        [f"mapping names facility {c}, which Dawa does not know" for c in sorted(set(mapping.org_units) - known_fac)]
        + [f"mapping names item {c}, which Dawa does not know" for c in sorted(set(mapping.items) - known_items)])
    payload: dict = dict(mapping.schemes)
    if mapping.data_set:
        payload["dataSet"] = mapping.data_set
    payload["period"] = dhis_period
    payload["dataValues"] = values
    result.payload = payload
    return result


__all__ = ["MonthlyAggregate", "Mapping", "Target", "MappingError", "Dhis2Export", "parse_mapping",
           "load_mapping", "monthly_aggregates", "monthly_reports", "export_data_value_set", "MEASURES"]
