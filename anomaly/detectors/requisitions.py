"""Requisitions as a leakage channel: asking far above what use justifies, ordering in emergency
again and again, and receiving stock that consumption never follows.

Three findings, each a case with the numbers that matter:

- **over-request**: a line requested more than its facility's own consumption and stock position
  justify (the suggested quantity, AMC × maximum months − closing) by more than
  ``OVER_MONTHS`` months of use beyond what the facility's own earlier requests and its peers'
  requests for the same item usually add, and at least ``OVER_RATIO`` times the suggestion.
- **frequent emergencies**: ``EMERGENCY_COUNT`` or more emergency requisitions by one facility
  within ``EMERGENCY_DAYS`` days, when its peers' median over the same span is at most one.
- **received, not consumed**: a delivery received ``FOLLOW_DAYS`` days ago or more after which
  the facility dispensed less than ``FOLLOW_SHARE`` of what its own use before it (its AMC) leads
  one to expect over those days.

The requisition lines are a frame of their own (``requisition_frame``), attached to the scan's
frames as ``frames.requisitions``; without it the detector finds nothing. The thresholds are fixed
from what the rules mean (a month of use, twice the suggestion), not fitted on a data set.
"""

from __future__ import annotations


import pandas as pd
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from anomaly.features import Frames
from anomaly.hits import Hit, squash
from stock.messages import code, count, day, join, msg, nmsg, num
from stock.messages import qty as quantity

NAME = "requisitions"
OVER_MONTHS = 1.5
OVER_RATIO = 2.0
EMERGENCY_COUNT = 3
EMERGENCY_DAYS = 90
FOLLOW_DAYS = 60
FOLLOW_SHARE = 0.3

_LINES_SQL = """
SELECT r.number, r.period, r.emergency, r.status, r.created_at, f.code AS facility_code,
       i.code AS item_code, i.name AS item_name, i.unit, l.amc, l.closing, l.suggested, l.requested,
       l.approved, r.waybill,
       (SELECT SUM(s.received) FROM requisition_shipment s WHERE s.line_id = l.id) AS received,
       (SELECT MAX(ev.at) FROM requisition_event ev WHERE ev.requisition_id = r.id AND ev.action = 'received')
           AS received_at
FROM requisition r
JOIN facility f ON f.id = r.facility_id
LEFT JOIN requisition_line l ON l.requisition_id = r.id
LEFT JOIN item i ON i.id = l.item_id
WHERE r.status <> 'draft'
ORDER BY r.created_at, r.number, i.code
"""


def requisition_frame(session: Session) -> pd.DataFrame:
    """Every submitted requisition line, quantities in base units, times in UTC; a requisition
    without lines (an emergency with nothing below minimum) is one row with no item. A database
    whose schema predates requisitions (a scan run before its upgrade) has none."""
    if not inspect(session.connection()).has_table("requisition"):
        return pd.DataFrame()
    result = session.connection().execute(text(_LINES_SQL))
    df = pd.DataFrame([tuple(r) for r in result], columns=list(result.keys()))
    for col in ("amc", "closing", "suggested", "requested", "approved", "received"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64") / 1000.0
    for col in ("created_at", "received_at"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601") if len(df) else df[col]
    df["emergency"] = df["emergency"].astype(bool)
    return df


def detect(frames: Frames) -> list[Hit]:
    lines = getattr(frames, "requisitions", None)
    if lines is None or len(lines) == 0:
        return []
    as_of = frames.as_of if len(frames.entries) else lines["created_at"].max()
    return over_requests(lines) + frequent_emergencies(lines, as_of) + not_consumed(lines, frames.entries, as_of)


def _excess_months(lines: pd.DataFrame) -> pd.Series:
    return (lines["requested"] - lines["suggested"]) / lines["amc"].clip(lower=1.0)


def over_requests(lines: pd.DataFrame) -> list[Hit]:
    lines = lines[lines["item_code"].notna()]
    df = lines.assign(excess=_excess_months(lines))
    hits = []
    for row in df.itertuples():
        if row.requested <= 0 or row.requested < OVER_RATIO * max(row.suggested, 1.0):
            continue
        own = df[(df.facility_code == row.facility_code) & (df.item_code == row.item_code)
                 & (df.created_at < row.created_at)]["excess"]
        peers = df[(df.item_code == row.item_code) & (df.facility_code != row.facility_code)]["excess"]
        usual = max(0.0, own.median() if len(own) else 0.0, peers.median() if len(peers) else 0.0)
        beyond = row.excess - usual
        if beyond <= OVER_MONTHS:
            continue
        score = squash(beyond / OVER_MONTHS - 1, half=2, floor=0.55, ceiling=0.95)
        hits.append(Hit(
            NAME, "facility_item", f"{row.facility_code}:{row.item_code}", row.facility_code, (), score,
            msg("%(number)s asked for %(qty)s of %(item)s where its own use (AMC %(amc)s) and stock (%(closing)s) "
                "justify %(suggested)s: %(excess)s months of use beyond its maximum, against %(usual)s usually added "
                "by it and its peers.", number=code(row.number), qty=quantity(row.requested, row.unit),
                item=code(row.item_name), amc=num(round(row.amc, 1)), closing=num(row.closing),
                suggested=num(row.suggested), excess=num(row.excess, 1), usual=num(usual, 1)),
            {"requested": row.requested, "suggested": row.suggested, "amc": row.amc, "closing": row.closing,
             "excess_months": round(row.excess, 2), "usual_excess_months": round(usual, 2)},
            case=f"over-request:{row.number}:{row.item_code}"))
    return hits


def frequent_emergencies(lines: pd.DataFrame, as_of: pd.Timestamp) -> list[Hit]:
    reqs = lines.drop_duplicates("number")
    window = pd.Timedelta(days=EMERGENCY_DAYS)
    recent = reqs[reqs["emergency"] & (reqs["created_at"] > as_of - window)]
    counts = recent.groupby("facility_code")["number"].count()
    facilities = reqs["facility_code"].unique()
    hits = []
    for fac, n in counts.items():
        if n < EMERGENCY_COUNT:
            continue
        others = [counts.get(f, 0) for f in facilities if f != fac]
        peer = float(pd.Series(others).median()) if others else 0.0
        if peer > 1:
            continue
        numbers = sorted(recent[recent["facility_code"] == fac]["number"])
        score = squash(n / EMERGENCY_COUNT, half=1, floor=0.55, ceiling=0.9)
        hits.append(Hit(
            NAME, "facility", fac, fac, (), score,
            nmsg("%(facility)s made %(n)s emergency requisition in the last %(days)s days (%(numbers)s); its "
                 "peers made %(peer)s (median).",
                 "%(facility)s made %(n)s emergency requisitions in the last %(days)s days (%(numbers)s); its "
                 "peers made %(peer)s (median).", facility=code(fac), n=count(n), days=count(EMERGENCY_DAYS),
                numbers=join(numbers, ","), peer=num(peer)),
            {"emergencies": int(n), "peer_median": peer, "requisitions": numbers},
            case=f"emergencies:{fac}:{as_of:%Y-%m}"))
    return hits


def not_consumed(lines: pd.DataFrame, entries: pd.DataFrame, as_of: pd.Timestamp) -> list[Hit]:
    got = lines[(lines["status"] == "received") & (lines["received"] > 0) & lines["item_code"].notna()
                & (lines["received_at"] <= as_of - pd.Timedelta(days=FOLLOW_DAYS))]
    if got.empty:
        return []
    live = entries[entries["reverses"] == ""] if "reverses" in entries else entries
    hits = []
    for row in got.itertuples():
        mine = live[(live.facility_code == row.facility_code) & (live.item_code == row.item_code)]
        after = mine[(mine.occurred_at > row.received_at)
                     & (mine.occurred_at <= row.received_at + pd.Timedelta(days=FOLLOW_DAYS))]
        used = float(after.loc[after.kind == "dispense", "quantity"].sum())
        lost = float(after.loc[after.kind.isin(["loss", "transfer_out"]), "quantity"].sum())
        expected = min(row.received + row.closing, row.amc * FOLLOW_DAYS / 30.4)
        if row.amc <= 0 or used >= FOLLOW_SHARE * expected:
            continue
        evidence = tuple(mine.loc[(mine.kind == "transfer_in") & (mine.document_number == row.waybill),
                                  "entry_id"])
        short = 1 - used / expected if expected else 1.0
        score = squash(short - (1 - FOLLOW_SHARE), half=0.2, floor=0.5, ceiling=0.9)
        if lost > 0:
            score = min(0.95, score + 0.05)
        hits.append(Hit(
            NAME, "facility_item", f"{row.facility_code}:{row.item_code}", row.facility_code, evidence, score,
            msg("%(facility)s received %(qty)s of %(item)s on %(date)s (%(number)s) and dispensed %(used)s in the "
                "%(days)s days after, where its use before (AMC %(amc)s) leads one to expect %(expected)s%(lost)s.",
                facility=code(row.facility_code), qty=quantity(row.received, row.unit), item=code(row.item_name),
                date=day(row.received_at), number=code(row.number), used=num(used), days=count(FOLLOW_DAYS),
                amc=num(round(row.amc, 1)), expected=num(round(expected)),
                lost=msg("; %(lost)s left as losses or transfers", lost=num(lost)) if lost else join([])),
            {"received": row.received, "dispensed_after": used, "expected": round(expected, 1), "left_other": lost},
            case=f"not-consumed:{row.number}:{row.item_code}"))
    return hits


__all__ = ["NAME", "detect", "requisition_frame", "over_requests", "frequent_emergencies", "not_consumed"]
