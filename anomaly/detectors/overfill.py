"""A user who fills prescriptions beyond what colleagues give for the same item and quantity.

Whole bottles and strips, rounded up to the pack, are given above the prescribed quantity every
day, by everyone who dispenses that item; that is practice, not leakage. A dispensing is marked
when the total filled on its prescription passes the prescribed quantity and also what colleagues
fill for the same item and prescribed quantity (their 95th percentile of the filled-to-prescribed
ratio) and the ledger's typical over-fill (the median ratio of all fills past their prescription); the user's marked fills are set against the colleagues' rate of such fills in the same
context (anomaly.peers). A user who over-fills a few prescriptions while every colleague gives
exactly the prescription stands out, even under the protocol ceiling; one who rounds up as all
do does not.
"""

from __future__ import annotations

from anomaly import peers
from anomaly.detectors.prescriptions import _when
from anomaly.features import Frames
from anomaly.hits import Hit
from stock.messages import code, count, msg, nmsg, num, sci
from stock.messages import qty as quantity

NAME = "overfill"
QUANTILE = 0.95


population = peers.population


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    rx = frames.prescriptions
    d = d[(d["prescription_id"] != "") & (d["recorded_by"] != "")]
    if d.empty or rx.empty:
        return []
    d = d.sort_values(["occurred_at", "seq"]).merge(
        rx.drop_duplicates("prescription_id")[["prescription_id", "quantity", "item_code"]].rename(
            columns={"quantity": "prescribed", "item_code": "rx_item"}), on="prescription_id", how="inner")
    d = d[(d["item_code"] == d["rx_item"]) & (d["prescribed"] > 0)].copy()
    if d.empty:
        return []
    d["filled"] = d.groupby("prescription_id")["quantity"].cumsum()
    d["ratio"] = d["filled"] / d["prescribed"]
    context = ["item_code", "prescribed"]
    usual = d.groupby(context)["ratio"].transform(lambda r: r.quantile(QUANTILE))
    over = d["ratio"] > 1.0 + 1e-9
    # Rounding up to a pack is a small excess; what is marked is also past the typical excess of
    # all over-fills in this ledger (their median ratio).
    typical = float(d.loc[over, "ratio"].median()) if over.any() else 1.0
    mark = over & (d["ratio"] > usual + 1e-9) & (d["ratio"] >= typical - 1e-9)
    u = peers.assess(d, mark, context)
    n_tested = peers.tested(u)
    hits = []
    for row, mine in peers.reported(u, d[mark.to_numpy()]):
        mine = mine.sort_values(["ratio", "seq"], ascending=[False, True])
        top = mine.iloc[0]
        reason = msg("%(user)s at %(facility)s filled %(marked)s of %(all)s beyond what colleagues give for the same "
                     "item and prescribed quantity, where their rate predicts %(expected)s (chance %(chance)s); the "
                     "largest: %(qty)s of %(item)s on prescription %(rx)s for %(prescribed)s (%(ratio)sx) %(when)s.",
                     user=code(row.recorded_by), facility=code(row.facility_code),
                     marked=nmsg("%(n)s prescription", "%(n)s prescriptions", n=count(row.marked)), all=count(row.n),
                     expected=num(row.expected, 1), chance=sci(row.chance), qty=quantity(top.quantity, top.unit),
                     item=code(top.item_name), rx=code(top.prescription_id), prescribed=num(top.prescribed),
                     ratio=num(top.ratio, 1), when=_when(top))
        hits.append(peers.user_hit(NAME, row, mine["entry_id"], reason, n_tested, dispensings=int(row.n)))
    return hits
