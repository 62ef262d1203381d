"""Transfers reconciled as flows: stock sent down a route that never reached the other end.

Stock in transit is between two books: the sender has written it off, the receiver has not yet
taken it on. Legs are not paired one to one (a delivery comes in two trips, two shipments arrive
as one, a waybill number is often missing); instead, per route, item and lot, what was sent is set
against what arrived, over time. Each arrival fills the shipments still open on its route, oldest
first among those sent within the route's transit allowance, then the overdue ones, newest first
(a late delivery of a past shipment); what the receiver writes off on arrival (a loss of that lot
within LOSS_DAYS of an arrival) fills them too, and so does what the sender adds back to its own
shelf by an adjustment soon after (it recorded more than it shipped). Whatever is still open once a shipment has been on
the road longer than the route's allowance is missing.

The allowance adapts to the ledger: TRANSIT_FACTOR times the route's median time from dispatch to
the next arrival (the network's median for a route with fewer than MIN_LEGS shipments), and never
less than ``transfer_receipt_days``. Stock sent within the allowance before the end of the data is
still in transit and not judged. One flag per route and item cites the open shipments and the
arrivals that reached them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from anomaly.features import Frames
from anomaly.hits import Hit
from stock.messages import code, count, day, join, msg, nmsg, num
from stock.messages import qty as quantity

NAME = "transfers"

LOSS_DAYS = 3
"""Losses the receiver records within this many days of an arrival (breakage found on unpacking)
account for stock that reached it."""
TRANSIT_FACTOR = 4.0
MIN_LEGS = 3
EVIDENCE_CAP = 8
_ROUTE = ["src", "dst", "item_code", "lot_number"]


def _events(frames: Frames) -> pd.DataFrame:
    live = frames.live
    outs = live[live["kind"] == "transfer_out"]
    ins = live[live["kind"] == "transfer_in"]
    ev = pd.concat([
        outs.assign(src=outs["facility_code"], dst=outs["counterparty"], leg="out"),
        ins.assign(src=ins["counterparty"], dst=ins["facility_code"], leg="in"),
    ])[_ROUTE + ["leg", "seq", "entry_id", "quantity", "occurred_at"]]
    routes = ev[ev["leg"] == "out"][["dst", "item_code", "lot_number"]].drop_duplicates()
    loss = live[live["kind"] == "loss"].rename(columns={"facility_code": "dst"})
    loss = loss.merge(routes, on=["dst", "item_code", "lot_number"])
    if len(loss):
        arrivals = ev[ev["leg"] == "in"][_ROUTE + ["occurred_at"]].rename(columns={"occurred_at": "arrived"})
        near = loss.merge(arrivals, on=["dst", "item_code", "lot_number"])
        gap = near["occurred_at"] - near["arrived"]
        near = near[(gap >= pd.Timedelta(0)) & (gap <= pd.Timedelta(days=LOSS_DAYS))]
        near = near.sort_values("arrived").drop_duplicates("seq", keep="last")
        ev = pd.concat([ev, near.assign(leg="loss")[_ROUTE + ["leg", "seq", "entry_id", "quantity", "occurred_at"]]])
    return ev.sort_values(["occurred_at", "seq"]).reset_index(drop=True)


def _allowance(ev: pd.DataFrame, floor_days: float) -> dict[tuple, pd.Timedelta]:
    """Per route (src, dst, item): TRANSIT_FACTOR times its median dispatch-to-next-arrival time."""
    outs, ins = ev[ev["leg"] == "out"], ev[ev["leg"] == "in"]
    if outs.empty or ins.empty:
        return {}
    nxt = pd.merge_asof(outs.sort_values("occurred_at"), ins[_ROUTE + ["occurred_at"]].rename(
        columns={"occurred_at": "arrived"}).sort_values("arrived"), left_on="occurred_at", right_on="arrived",
        by=_ROUTE, direction="forward")
    lag = (nxt["arrived"] - nxt["occurred_at"]).dt.total_seconds() / 86400.0
    nxt = nxt.assign(lag=lag).dropna(subset=["lag"])
    overall = float(nxt["lag"].median()) if len(nxt) else 0.0
    per = nxt.groupby(["src", "dst", "item_code"])["lag"].agg(["median", "size"])
    out = {}
    for key, row in per.iterrows():
        usual = row["median"] if row["size"] >= MIN_LEGS else overall
        out[key] = pd.Timedelta(days=max(floor_days, TRANSIT_FACTOR * usual))
    return out


def reconcile(ev: pd.DataFrame, allowance: dict, default: pd.Timedelta, as_of) -> list[dict]:
    """Open shipments per route and lot after every arrival has filled them; one dict per
    shipment that is past its allowance with something missing."""
    open_legs = []
    # A route and lot whose arrivals never run ahead of what was sent and in the end match it has
    # nothing open: skip it without walking it (most of a ledger's routes).
    signed = np.where(ev["leg"] == "out", ev["quantity"], -ev["quantity"])
    running = pd.Series(signed, index=ev.index).groupby([ev[c] for c in _ROUTE], sort=False).cumsum()
    keys = [ev[c] for c in _ROUTE]
    settled = (running.groupby(keys, sort=False).transform("min") >= -1e-9) & \
        (running.groupby(keys, sort=False).transform("last").abs() <= 1e-9)
    ev = ev[~settled.to_numpy()]
    for key, group in ev.groupby(_ROUTE, sort=False):
        allowed = allowance.get(key[:3], default)
        pending: list[dict] = []
        for leg, entry_id, quantity, when in zip(group["leg"], group["entry_id"], group["quantity"],
                                                 group["occurred_at"]):
            if leg == "out":
                pending.append({"route": key, "entry_id": entry_id, "sent": quantity, "left": quantity,
                                "at": when, "allowed": allowed, "filled_by": []})
                continue
            rest = quantity
            timely = [p for p in pending if p["left"] > 0 and when - p["at"] <= allowed]
            overdue = [p for p in reversed(pending) if p["left"] > 0 and when - p["at"] > allowed]
            for p in timely + overdue:
                if rest <= 0:
                    break
                take = min(rest, p["left"])
                p["left"] -= take
                rest -= take
                p["filled_by"].append((entry_id, leg, take, when))
        open_legs += [p for p in pending if p["left"] > 1e-9 and as_of - p["at"] > p["allowed"]]
    return open_legs


def _added_back(frames: Frames, missing: list[dict]) -> list[dict]:
    """A store that ships less than it records adds the rest back to its own shelf: a positive
    adjustment of the lot at the sender, within the allowance after the shipment and not already
    the correction of a dispensing, fills an open shipment (each adjustment once, oldest first)."""
    live = frames.live
    adj = live[(live["kind"] == "adjustment") & (live["quantity"] > 0) & (live["corrects"] == "")
               & (live["reverses"] == "")]
    if adj.empty or not missing:
        return missing
    pool: dict[tuple, list[list]] = defaultdict(list)
    for fac, item, lot, eid, quantity, when in zip(adj["facility_code"], adj["item_code"], adj["lot_number"],
                                                   adj["entry_id"], adj["quantity"], adj["occurred_at"]):
        pool[(fac, item, lot)].append([when, quantity, eid])
    for p in sorted(missing, key=lambda p: p["at"]):
        src, _dst, item, lot = p["route"]
        for a in pool.get((src, item, lot), ()):
            if a[1] <= 0 or not (p["at"] <= a[0] <= p["at"] + p["allowed"]):
                continue
            take = min(a[1], p["left"])
            a[1] -= take
            p["left"] -= take
            p["filled_by"].append((a[2], "adjustment", take, a[0]))
            if p["left"] <= 1e-9:
                break
    return [p for p in missing if p["left"] > 1e-9]


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    ev = _events(frames)
    if (ev["leg"] == "out").sum() == 0:
        return []
    floor = pd.Timedelta(days=s.transfer_receipt_days)
    allowance = _allowance(ev, float(s.transfer_receipt_days))
    default = max([floor, *allowance.values()]) if allowance else floor
    missing = _added_back(frames, reconcile(ev, allowance, default, frames.as_of))
    missing = [p for p in missing if p["left"] > p["sent"] * s.transfer_tolerance_share]
    if not missing:
        return []
    info = frames.live.drop_duplicates("item_code").set_index("item_code")[["item_name", "unit"]]
    by_route: dict[tuple, list[dict]] = defaultdict(list)
    for p in missing:
        by_route[p["route"][:3]].append(p)
    hits = []
    for (src, dst, item), legs in sorted(by_route.items()):
        legs.sort(key=lambda p: (-p["left"], p["at"]))
        sent, left = sum(p["sent"] for p in legs), sum(p["left"] for p in legs)
        never = [p for p in legs if not p["filled_by"]]
        name, unit = info.loc[item, "item_name"], info.loc[item, "unit"]
        cited: list[str] = []
        for p in legs:
            cited += [p["entry_id"]] + [f[0] for f in p["filled_by"]]
        allowed = legs[0]["allowed"].total_seconds() / 86400.0
        parts = []
        for p in legs[:3]:
            got = p["sent"] - p["left"]
            arrived = (nmsg("%(got)s arrived in %(n)s part", "%(got)s arrived in %(n)s parts", got=num(got),
                            n=count(len(p['filled_by']))) if p["filled_by"] else msg("nothing arrived"))
            parts.append(msg("%(sent)s sent on %(date)s, %(arrived)s", sent=num(p['sent']), date=day(p['at']),
                             arrived=arrived))
        more = (nmsg(" and %(n)s more shipment", " and %(n)s more shipments", n=count(len(legs) - 3))
                if len(legs) > 3 else join([]))
        reason = msg("%(qty)s of %(item)s sent from %(source)s to %(destination)s never reached %(destination)s: "
                     "%(parts)s%(more)s. The route's usual transit allows %(days)s days; no loss recorded there "
                     "accounts for the rest.", qty=quantity(left, unit), item=code(name), source=code(src),
                     destination=code(dst), parts=join(parts, ";"), more=more, days=num(allowed, 0))
        strength = left / sent if sent else 1.0
        hits.append(Hit(NAME, "transfer", f"{src}>{dst}:{item}", src, tuple(dict.fromkeys(cited))[:EVIDENCE_CAP],
                        float(np.clip(0.6 + 0.35 * strength, 0.0, 0.95)), reason,
                        {"sent": sent, "missing": left, "shipments": len(legs), "never_arrived": len(never),
                         "allowance_days": round(allowed, 1), "strength": round(strength, 4)},
                        case=f"{src}>{dst}:{item}"))
    return hits
