"""The ground truth: which ledger entries are the evidence of which injected incident.

Detection quality is measured against this file, per scenario, so it lists only entries that were
actually written (an incident the simulation could not carry out, say a write-off at a facility
that held nothing worth writing off, is left out rather than pointing at nothing), and each
description states the numbers an auditor would look at.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from sample_data.catalog import ITEMS
from sample_data.frames import DAY, REASONS, Timeline
from sample_data.network import KIND_NAMES, Network
from sample_data.output import LedgerRows, entry_id, format_quantities
from sample_data.scenarios import Incident
from sample_data.supply import SimResult


def _amount(qty: int, item: int) -> str:
    text = format_quantities(np.array([qty]), np.array([item]))[0]
    unit = ITEMS[item].unit
    if unit != "ml" and text != "1":
        unit += "s"
    return f"{text} {unit}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(inc: Incident, rows: np.ndarray, led: LedgerRows, sim: SimResult, *, net: Network,
             tl: Timeline, cards: list[str], rx_ids: list[str], rx_qty: np.ndarray,
             user_ids: list[str]) -> str:
    """One sentence in an auditor's words, with the figures from the rows actually written."""
    info = {**inc.info, **sim.incident_info.get(inc.number, {})}
    codes = net.codes
    item = int(info.get("item", led.item[rows[0]]))
    name = ITEMS[item].name
    total = int(led.qty[rows].sum())
    users = sorted({user_ids[u] for u in led.user[rows].tolist()})
    s = inc.scenario
    if s == "over_dispense":
        rx = int(info["rx"])
        presc = int(rx_qty[rx])
        return (f"{_amount(total, item)} of {name} dispensed against prescription {rx_ids[rx]} for "
                f"{_amount(presc, item)} ({total / presc:.1f}x)")
    if s == "ghost_patient":
        n_cards = len(set(led.card[rows].tolist()))
        return (f"{_count(len(rows), 'dispensing')} of {name} ({_amount(total, item)}) recorded by "
                f"{', '.join(users)} to {_count(n_cards, 'health card')} that are in no patient register")
    if s == "deceased_patient":
        died = tl.start + timedelta(days=int(info["death"]))
        return (f"{_count(len(rows), 'dispensing')} of {name} ({_amount(total, item)}) to {cards[int(info['card'])]} "
                f"after the patient's death on {died.isoformat()}")
    if s == "doctor_shopping":
        facs = sorted({codes[f] for f in led.fac[rows].tolist()})
        span = (int(led.t[rows].max()) - int(led.t[rows].min())) // DAY
        return (f"{cards[int(info['card'])]} collected {name} at {len(facs)} facilities ({', '.join(facs)}) "
                f"within {_count(span, 'day')}, each on a 30-day prescription")
    if s == "no_prescription_controlled":
        return (f"{name} (controlled) dispensed {_count(len(rows), 'time')} to {cards[int(info['card'])]} "
                f"without a prescription, {_amount(total, item)} in all")
    if s == "count_shortfall":
        book, counted = int(info["book"]), int(info["counted"])
        return (f"count of {name} lot {sim.lots.number[int(info['lot'])] or '(untracked)'}: "
                f"{_amount(counted, item)} counted against {_amount(book, item)} on the books, "
                f"{_amount(book - counted, item)} gone with no loss recorded")
    if s == "premature_writeoff":
        reason = REASONS[int(led.reason[rows[0]])]
        return (f"{_amount(total, item)} of {name} lot {sim.lots.number[int(info['lot'])]} written off as "
                f"{reason} with {int(info['days_left'])} days still to expiry")
    if s == "transfer_shrinkage":
        got = "none ever received" if info["in"] is None else f"{_amount(int(info['in']), item)} received"
        return (f"waybill {info['doc']}: {_amount(int(info['out']), item)} of {name} sent from "
                f"{codes[int(info['src'])]} to {codes[int(info['dst'])]}, {got}, no loss recorded")
    if s == "off_hours_user":
        kind = KIND_NAMES[int(net.kind[inc.facility])].replace("_", " ")
        return (f"{_count(len(rows), 'dispensing')} of controlled items between 01:00 and 04:00 by "
                f"{', '.join(users)} at a {kind} that is closed at night")
    if s == "consumption_spike":
        month = tl.month_label(int(info["month"]))
        return (f"{name} in {month}: {_count(len(rows), 'extra dispensing')} ({_amount(total, item)}) on top of a "
                f"usual {info['baseline']:.0f} a month, about {info['factor']:.1f}x the facility's history")
    raise ValueError(s)


def truth_rows(incidents: list[Incident], led: LedgerRows, sim: SimResult, *, net: Network, tl: Timeline,
               cards: list[str], rx_ids: list[str], rx_qty: np.ndarray, tag: str,
               user_ids: list[str]) -> tuple[list[list[str]], dict[str, int]]:
    """Rows for truth.csv, one per evidence entry, and the number of incidents per scenario."""
    idx = np.flatnonzero(led.inc >= 0)
    order = np.argsort(led.inc[idx], kind="stable")
    idx = idx[order]
    bounds = np.flatnonzero(np.diff(led.inc[idx])) + 1
    groups = {int(led.inc[g[0]]): g for g in np.split(idx, bounds) if len(g)}
    out: list[list[str]] = []
    per_scenario: dict[str, int] = {}
    for inc in incidents:
        rows = groups.get(inc.number)
        if rows is None:
            continue
        text = describe(inc, rows, led, sim, net=net, tl=tl, cards=cards, rx_ids=rx_ids, rx_qty=rx_qty,
                        user_ids=user_ids)
        for r in rows.tolist():
            out.append([inc.incident_id, inc.scenario, entry_id(tag, r), net.codes[int(led.fac[r])], text])
        per_scenario[inc.scenario] = per_scenario.get(inc.scenario, 0) + 1
    return out, per_scenario

