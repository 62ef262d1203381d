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
from anomaly.hits import Hit, amount, plural, qty

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
        reason = (f"{row.recorded_by} at {row.facility_code} filled {plural(int(row.marked), 'prescription')} "
                  f"of {int(row.n)} beyond what colleagues give for the same item and prescribed quantity, "
                  f"where their rate predicts {row.expected:.1f} (chance {row.chance:.1e}); the largest: "
                  f"{amount(top.quantity, top.unit)} of {top.item_name} on prescription {top.prescription_id} for "
                  f"{qty(top.prescribed)} ({top.ratio:.1f}x) {_when(top)}.")
        hits.append(peers.user_hit(NAME, row, mine["entry_id"], reason, n_tested, dispensings=int(row.n)))
    return hits
