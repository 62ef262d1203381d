"""Transfers that never arrive, or arrive short with nothing recorded to explain it.

Stock in transit is between two books: the sender has written it off, the receiver has not yet
taken it on. A waybill that is never received, or received short with no breakage recorded at
the receiving end, is stock that vanished on the road (or was skimmed at either end). Legs are
paired as stock.transfers pairs them (by waybill where both carry it, otherwise by route, item,
lot and the earliest arrival, preferring the same quantity), here on whole frames so a national
ledger pairs in seconds. A transfer sent less than ``transfer_receipt_days`` before the scan's
``as_of`` is still on the road and is not judged.
"""

from __future__ import annotations

import pandas as pd

from anomaly.features import Frames
from anomaly.hits import Hit, amount, qty, squash

NAME = "transfers"

LOSS_DAYS = 3
"""Losses the receiver records within this many days of the arrival (breakage found on
unpacking) explain a short delivery."""

_LEG = ["seq", "entry_id", "facility_code", "counterparty", "item_code", "lot_number", "quantity",
        "occurred_at", "document_number"]


_ROUTE = ["src", "dst", "item_code", "lot_number"]


def _legs(frames: Frames, kind: str) -> pd.DataFrame:
    legs = frames.of_kind(kind)
    return legs.sort_values(["occurred_at", "seq"]).reset_index(drop=True)


def match(outs: pd.DataFrame, ins: pd.DataFrame) -> pd.DataFrame:
    """Pair transfer_out legs with transfer_in legs; one row per out, in-leg columns suffixed
    ``_in`` (empty when it found no arrival).

    The same pairs as stock.transfers.match_transfers, which walks the outs in time order: first
    the n-th out of a waybill line takes the n-th arrival of that line; then each remaining out
    takes the earliest unused arrival on its route of the same quantity, else the earliest. That
    greedy walk is done here in rounds: every waiting out picks its best candidate, and on each
    route the outs are accepted in time order up to the first that wants an arrival an earlier
    out has picked; that one picks again in the next round. One more thing is added: arrivals of
    a waybill line beyond its outs (a delivery received in two parts) count towards the first
    out of the line, in ``extra_in`` and ``extra_ids``, so a split delivery is not taken for a
    short one.
    """
    o = outs[_LEG].assign(src=outs["facility_code"], dst=outs["counterparty"], order=range(len(outs)))
    i = ins[_LEG].assign(src=ins["counterparty"], dst=ins["facility_code"])
    line = _ROUTE + ["document_number"]
    pairs = []
    od, idoc = o[o["document_number"] != ""], i[i["document_number"] != ""]
    if len(od) and len(idoc):
        od = od.assign(n=od.groupby(line).cumcount())
        idoc = idoc.assign(n=idoc.groupby(line).cumcount())
        by_doc = od[["seq"] + line + ["n"]].merge(idoc[["seq"] + line + ["n"]], on=line + ["n"],
                                                  suffixes=("", "_in"))
        pairs.append(by_doc[["seq", "seq_in"]])
    done_out = set(pairs[0]["seq"]) if pairs else set()
    used_in = set(pairs[0]["seq_in"]) if pairs else set()
    pending = o[~o["seq"].isin(done_out)]
    free = i[~i["seq"].isin(used_in)]
    if len(pending) and len(free):
        cand = pending[["seq", "order", "quantity", "occurred_at", "document_number"] + _ROUTE].merge(
            free[["seq", "quantity", "occurred_at", "document_number"] + _ROUTE], on=_ROUTE,
            suffixes=("", "_in"))
        cand = cand[(cand["occurred_at_in"] >= cand["occurred_at"])
                    & ~((cand["document_number"] != "") & (cand["document_number_in"] != ""))]
        cand = cand.assign(inexact=cand["quantity_in"] != cand["quantity"])
        cand = cand.sort_values(["order", "inexact", "occurred_at_in", "seq_in"])
        while len(cand):
            best = cand.drop_duplicates("seq")
            clash = best.duplicated("seq_in")
            blocked = clash.groupby([best[c] for c in _ROUTE]).cummax()
            won = best[~blocked]
            pairs.append(won[["seq", "seq_in"]])
            cand = cand[~cand["seq"].isin(won["seq"]) & ~cand["seq_in"].isin(won["seq_in"])]
    paired = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame({"seq": [], "seq_in": []})
    m = o.merge(paired, on="seq", how="left").merge(i[_LEG].add_suffix("_in"), on="seq_in", how="left")
    # Arrivals of a waybill line that no out took: the rest of a delivery received in parts.
    rest = i[(i["document_number"] != "") & ~i["seq"].isin(paired["seq_in"])]
    m["extra_in"] = 0.0
    m["extra_ids"] = [()] * len(m)
    if len(rest):
        rest = rest.groupby(line, sort=False).agg(extra=("quantity", "sum"), ids=("entry_id", tuple))
        first = m[m["seq_in"].notna() & (m["document_number"] != "")].drop_duplicates(line)
        first = first.join(rest, on=line, how="inner")
        m.loc[first.index, "extra_in"] = first["extra"]
        m.loc[first.index, "extra_ids"] = pd.Series(list(first["ids"]), index=first.index, dtype=object)
    return m.drop(columns=["src", "dst", "order"])


def detect(frames: Frames) -> list[Hit]:
    s = frames.settings
    outs = _legs(frames, "transfer_out")
    if outs.empty:
        return []
    m = match(outs, _legs(frames, "transfer_in"))
    as_of = frames.as_of
    due = as_of - pd.Timedelta(days=s.transfer_receipt_days)
    missing = m[m["seq_in"].isna() & (m["occurred_at"] <= due)]
    got = m[m["seq_in"].notna()]
    got = got.assign(received=got["quantity_in"] + got["extra_in"])
    short = got[got["received"] < got["quantity"] * (1 - s.transfer_tolerance_share)]
    short = _explained(frames, short)
    short = short[short["unexplained"] > short["quantity"] * s.transfer_tolerance_share]
    info = frames.live.set_index("seq")[["item_name", "unit", "recorded_by", "local_date"]]
    hits: list[Hit] = []
    for row in missing.join(info, on="seq").sort_values("seq").itertuples():
        waited = (as_of - row.occurred_at).days
        score = squash(waited / s.transfer_receipt_days - 1, half=2, floor=0.8, ceiling=0.97)
        hits.append(Hit(
            NAME, "transfer", row.document_number or row.entry_id, row.facility_code, (row.entry_id,), score,
            f"{_waybill(row)}{amount(row.quantity, row.unit)} of {row.item_name}{_lot(row)} sent from "
            f"{row.facility_code} to {row.counterparty} on {row.local_date:%Y-%m-%d} by {row.recorded_by}, "
            f"never received {waited} days later.",
            {"sent": row.quantity, "received": 0, "days_waiting": waited},
        ))
    for row in short.join(info, on="seq").sort_values("seq").itertuples():
        share = row.unexplained / row.quantity
        score = squash(share, half=0.2, floor=0.6, ceiling=0.95)
        losses = (f", of which losses recorded there explain only {qty(row.explained)}" if row.explained > 0
                  else " and no loss recorded there")
        arrived = info.loc[int(row.seq_in), "local_date"]
        parts = len(row.extra_ids) + 1
        when = f"on {arrived:%Y-%m-%d}" if parts == 1 else f"in {parts} parts from {arrived:%Y-%m-%d}"
        hits.append(Hit(
            NAME, "transfer", row.document_number or row.entry_id, row.facility_code,
            (row.entry_id, row.entry_id_in) + tuple(row.extra_ids), score,
            f"{_waybill(row)}{amount(row.quantity, row.unit)} of {row.item_name}{_lot(row)} sent from "
            f"{row.facility_code} to {row.counterparty} on {row.local_date:%Y-%m-%d}, "
            f"{qty(row.received)} received {when}: "
            f"{qty(row.shortfall)} ({row.shortfall / row.quantity:.0%}) missing{losses}.",
            {"sent": row.quantity, "received": row.received, "explained_by_losses": row.explained,
             "unexplained": row.unexplained},
        ))
    return hits


def _explained(frames: Frames, short: pd.DataFrame) -> pd.DataFrame:
    """How much of each short delivery the receiver's own loss entries account for: losses of
    that item and lot between the dispatch and a few days after the arrival."""
    short = short.assign(shortfall=short["quantity"] - short["received"], explained=0.0)
    if short.empty:
        return short.assign(unexplained=short["shortfall"])
    loss = frames.of_kind("loss")[["facility_code", "item_code", "lot_number", "quantity", "occurred_at"]]
    near = short[["seq", "counterparty", "item_code", "lot_number", "occurred_at", "occurred_at_in"]].merge(
        loss, left_on=["counterparty", "item_code", "lot_number"],
        right_on=["facility_code", "item_code", "lot_number"], suffixes=("", "_loss"))
    near = near[(near["occurred_at_loss"] >= near["occurred_at"])
                & (near["occurred_at_loss"] <= near["occurred_at_in"] + pd.Timedelta(days=LOSS_DAYS))]
    explained = near.groupby("seq")["quantity"].sum()
    short["explained"] = short["seq"].map(explained).fillna(0.0).clip(upper=short["shortfall"])
    return short.assign(unexplained=short["shortfall"] - short["explained"])


def _waybill(row) -> str:
    return f"Waybill {row.document_number}: " if row.document_number else ""


def _lot(row) -> str:
    return f" (lot {row.lot_number})" if row.lot_number else ""
