"""A facility's figures for a period, computed from its ledger: what a requisition reports.

Per item: opening balance, received (receipts and transfers in), dispensed, issued (transfers out),
losses, adjustments (adjustments and counts, signed), closing balance, the days the item was out
of stock, and the average monthly consumption adjusted for stockout days.

A correction (a reversal) counts under the kind of the entry it reverses, so a reversed dispensing
lowers what was dispensed rather than showing as an adjustment. Months are calendar months in the
facility's time zone (``zone_of``: its own, else DAWA_DEFAULT_TIMEZONE), as the DHIS2 monthly
figures count them: a dispensing at 23:30 on the last day of a month belongs to that month.

Consumption is dispensed plus issued: for a store, what it sends on is what it uses up. A month's
consumption is adjusted for the days the item was out: consumption × days ÷ (days − stockout days)
(the adjustment OpenLMIS makes). A month out of stock throughout says nothing about demand and is
left out of the average; so is a month before the item was ever held.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from operator import itemgetter

from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from stock.quantities import SCALE
from stock.settings import get_settings

COLUMNS = ("opening", "received", "dispensed", "issued", "losses", "adjustments", "closing")
_COLUMN_OF_KIND = {"receipt": "received", "transfer_in": "received", "dispense": "dispensed",
                   "transfer_out": "issued", "loss": "losses", "adjustment": "adjustments", "count": "adjustments"}
_SIGN = {"received": 1, "dispensed": -1, "issued": -1, "losses": -1, "adjustments": 1}
DAY_S = 86400
_KIND = {kind: (column, _SIGN[column], column in ("dispensed", "issued")) for kind, column in _COLUMN_OF_KIND.items()}


@dataclass(frozen=True)
class ItemFigures:
    item_id: int
    opening: Decimal
    received: Decimal
    dispensed: Decimal
    issued: Decimal
    losses: Decimal
    adjustments: Decimal
    closing: Decimal
    stockout_days: int
    amc: Decimal


def zone_of(facility) -> ZoneInfo:
    """The zone a facility's months are counted in: its own, else DAWA_DEFAULT_TIMEZONE."""
    return ZoneInfo(facility.timezone or get_settings().default_timezone)


def month_start(moment: datetime, zone: tzinfo = timezone.utc) -> datetime:
    """The first instant (in UTC) of the month ``moment`` falls in, months counted in ``zone``."""
    local = moment.astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone).astimezone(timezone.utc)


def add_months(start: datetime, n: int, zone: tzinfo = timezone.utc) -> datetime:
    """The first instant (in UTC) of the month ``n`` months after the one ``start`` falls in, in ``zone``."""
    local = start.astimezone(zone)
    index = local.year * 12 + local.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=zone).astimezone(timezone.utc)


def period_label(moment: datetime, zone: tzinfo = timezone.utc) -> str:
    """``YYYY-MM`` of the month ``moment`` falls in, in ``zone``."""
    return moment.astimezone(zone).strftime("%Y-%m")


def period_bounds(period: str, zone: tzinfo = timezone.utc) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as its first instant and the first instant of the next month (both in UTC), the
    month's bounds being midnight in ``zone``."""
    year, month = (int(p) for p in period.split("-"))
    start = datetime(year, month, 1, tzinfo=zone).astimezone(timezone.utc)
    return start, add_months(start, 1, zone)


def _dec(milli: int) -> Decimal:
    whole, part = divmod(milli, SCALE)
    if not part:  # most quantities are whole units: no decimal arithmetic
        return Decimal(whole)
    return (Decimal(milli) / SCALE).normalize()


def facility_figures(session: Session, facility_id: int, *, start: datetime, end: datetime,
                     amc_months: int, zone: tzinfo = timezone.utc) -> dict[int, ItemFigures]:
    """Figures of every item the facility has moved, over [start, end); the average monthly
    consumption over the ``amc_months`` whole months (in ``zone``) before the month ``end`` falls in
    (or ends)."""
    return figures_of(session, [facility_id], start=start, end=end, amc_months=amc_months,
                      zone=zone).get(facility_id, {})


SCAN_FROM = 10
"""From this many facilities on, the ledger is read in one pass in storage order rather than each
facility's rows through its index: at a million rows, fetching each facility's scattered rows cost
several times the sequential read of them all."""


def figures_of(session: Session, facility_ids: list[int], *, start: datetime, end: datetime,
               amc_months: int, zone: tzinfo = timezone.utc) -> dict[int, dict[int, ItemFigures]]:
    """``facility_figures`` of several facilities at once (their months counted in one ``zone``):
    {facility id: {item id: figures}}.

    Rows are read as the driver returns them (no per-row type conversion): quantities as integer
    thousandths, times as the stored text on SQLite (compared with bounds in the same text form)
    or as timestamps on PostgreSQL; a time is parsed only where stock sat at zero.

    Only the rows from the window's start on are read. The balance at the start is the stock on
    hand now (the balance table, the ledger's running total kept in the same transaction as every
    entry) less what moved since: summing the older half of the ledger instead cost more than
    everything else together."""
    amc_end = month_start(end, zone)
    amc_start = add_months(amc_end, -amc_months, zone)
    w0 = min(start, amc_start)
    sqlite = session.get_bind().dialect.name == "sqlite"
    key = _sqlite_key if sqlite else (lambda moment: moment)
    wanted = set(facility_ids)
    mark = ":{}" if sqlite else "%({})s"  # the drivers' own named parameters
    among = "" if len(wanted) >= SCAN_FROM else f"facility_id IN ({', '.join(str(int(f)) for f in sorted(wanted))})"
    kind_of = dict(_rows(session, "SELECT e.reverses, t.kind FROM ledger_entry e JOIN ledger_entry t "
                                  "ON t.entry_id = e.reverses WHERE e.reverses IS NOT NULL", {}))
    openings = {(fac, item): int(total) for fac, item, total in _rows(
        session, f"SELECT facility_id, item_id, SUM(on_hand) FROM balance{' WHERE ' + among if among else ''} "
                 "GROUP BY facility_id, item_id", {}) if fac in wanted}
    pairs: dict[tuple[int, int], list] = defaultdict(list)
    k_end = key(end)
    for fac, item, kind, effect, at, reverses in _rows(
            session, "SELECT facility_id, item_id, kind, effect, occurred_at, reverses FROM ledger_entry "
                     f"WHERE occurred_at >= {mark.format('w0')}{' AND ' + among if among else ''} ORDER BY id",
            {"w0": key(w0)}):
        if fac in wanted:
            if at < k_end:
                pairs[fac, item].append((kind_of.get(reverses, kind) if reverses else kind, effect, at))
            else:
                openings[fac, item] = openings.get((fac, item), 0) - effect
    months = [(add_months(amc_start, n, zone), add_months(amc_start, n + 1, zone)) for n in range(amc_months)]
    bounds = Bounds(key, w0, start, end, months)
    out: dict[int, dict[int, ItemFigures]] = {f: {} for f in facility_ids}
    for fac, item in sorted(set(openings) | set(pairs)):
        rows = pairs.get((fac, item), [])
        rows.sort(key=_AT)  # storage order is recording order; some were entered after the fact
        opening = openings.get((fac, item), 0) - sum(map(_EFFECT, rows))
        figures = _item(item, opening, rows, bounds)
        if _moved(figures):
            out[fac][item] = figures
    return out


_AT = itemgetter(2)
_EFFECT = itemgetter(1)


def _rows(session: Session, sql: str, params: dict) -> list[tuple]:
    """Plain tuples straight from the driver, on the session's connection and transaction: at a
    million rows, building result rows cost more than the query."""
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def _sqlite_key(moment: datetime) -> str:
    """A UTC instant as SQLite stores it, for comparing with stored text."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S" + (".%f" if moment.microsecond else ""))


def _instant(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


class Bounds:
    """The window's bounds, as instants and as keys comparable with the stored times."""

    def __init__(self, key, w0: datetime, start: datetime, end: datetime, months: list[tuple[datetime, datetime]]):
        self.w0, self.start, self.end, self.months = w0, start, end, months
        self.k_start = key(start)
        self.k_months = [(key(m0), key(m1)) for m0, m1 in months]


def _moved(f: ItemFigures) -> bool:
    return any(getattr(f, c) for c in COLUMNS) or f.amc > 0


def _item(item_id: int, balance: int, entries: list, b: Bounds) -> ItemFigures:
    """Walk one item's entries from the window's start (``balance`` on hand then) to its end."""
    totals = dict.fromkeys(COLUMNS, 0)
    used = [0] * len(b.months)
    out_s = [0.0] * (len(b.months) + 1)  # seconds at zero per AMC month, then in the period
    windows = b.months + [(b.start, b.end)]
    first_held = b.w0 if balance else None
    opening = balance

    def at_zero(t0: datetime, t1: datetime) -> None:
        for n, (m0, m1) in enumerate(windows):
            lo, hi = max(t0, m0), min(t1, m1)
            if hi > lo:
                out_s[n] += (hi - lo).total_seconds()

    zero_since = b.w0 if balance == 0 else None
    edges = [m0 for m0, _ in b.k_months] + [b.k_months[-1][1]] if b.k_months else []
    month = -1  # index of the AMC month the walk is in (-1: before the first)
    last, n_used, k_start = len(edges) - 1, len(used), b.k_start
    for kind, effect, at in entries:
        if zero_since is not None:
            at_zero(zero_since, _instant(at))
            zero_since = None
        balance += effect
        if balance == 0:
            zero_since = _instant(at)
        elif first_held is None:
            first_held = _instant(at)
        column, sign, use = _KIND[kind]
        if at < k_start:
            opening += effect
        else:
            totals[column] += effect * sign
        if use:
            while month < last and at >= edges[month + 1]:
                month += 1
            if 0 <= month < n_used:
                used[month] -= effect
    if zero_since is not None:
        at_zero(zero_since, b.end)
    totals["opening"] = opening
    totals["closing"] = opening + sum(totals[c] * _SIGN[c] for c in _SIGN)
    adjusted = []
    for n, (m0, m1) in enumerate(b.months):
        days = round((m1 - m0).total_seconds() / DAY_S)
        out_days = round(out_s[n] / DAY_S)
        if first_held is None or first_held >= m1 or out_days >= days:
            continue
        adjusted.append(Decimal(used[n]) * days / (days - out_days))
    amc_milli = (sum(adjusted) / len(adjusted)).quantize(Decimal(1), ROUND_HALF_UP) if adjusted else Decimal(0)
    return ItemFigures(item_id, *(_dec(totals[c]) for c in COLUMNS),
                       stockout_days=round(out_s[-1] / DAY_S), amc=_dec(int(amc_milli)))


__all__ = ["ItemFigures", "COLUMNS", "facility_figures", "figures_of", "SCAN_FROM", "period_bounds", "period_label",
           "month_start", "add_months", "zone_of"]
