"""A user dispensing controlled items when the facility is shut, more than colleagues and their own
other work explain.

When a facility works is read from the ledger, not configured: a (weekday, local hour) is quiet
when the facility records less than QUIET_SHARE of a uniform week's share of its dispensings in it
(health centres closed on Friday and Saturday, nights at a clinic, the small hours at a hospital
with little night work). A controlled dispensing in a quiet hour is marked; a user's marked
dispensings are set against the larger of the colleagues' rate (at the facility, leaning on
facilities of the same kind) and the user's own rate of quiet-hour work on uncontrolled items (a
night shift is a rota, not a sign) (anomaly.peers).
"""

from __future__ import annotations

import pandas as pd

from anomaly import peers
from anomaly.detectors.prescriptions import _when
from anomaly.features import Frames
from anomaly.hits import Hit
from anomaly.wording import times
from stock.messages import code, count, msg, num, sci
from stock.messages import qty as quantity

NAME = "afterhours"
QUIET_SHARE = 0.25
"""A quiet hour holds less than this fraction of 1/168 of the colleagues' dispensings."""


population = peers.population


def quiet(d: pd.DataFrame) -> pd.Series:
    """Whether each dispensing falls in an hour of the week in which its facility rarely works."""
    cell = d["local_date"].dt.day_of_week * 24 + d["local_hour"]
    frame = pd.DataFrame({"f": d["facility_code"], "c": cell, "one": 1})
    share = frame.groupby(["f", "c"])["one"].transform("size") / frame.groupby("f")["one"].transform("size")
    return pd.Series((share < QUIET_SHARE / 168).to_numpy(), index=d.index)


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    d = d[d["recorded_by"] != ""]
    if d.empty or not d["controlled"].any():
        return []
    q = quiet(d)
    ctrl = d["controlled"]
    own = (d.assign(_q=(q & ~ctrl).astype(float), _u=(~ctrl).astype(float))
           .groupby(peers.USER)[["_q", "_u"]].transform("sum"))
    own_rate = own["_q"] / (own["_u"] + 1.0)  # a user with no uncontrolled work has no shift to show
    c = d[ctrl]
    mark = q[ctrl]
    u = peers.assess(c, mark, ["facility_code"], wider=["facility_kind"], floor=own_rate[ctrl])
    n_tested = peers.tested(u)
    hits = []
    for row, mine in peers.reported(u, c[mark.to_numpy()]):
        mine = mine.sort_values(["quantity", "seq"], ascending=[False, True])
        top = mine.iloc[0]
        reason = msg("%(user)s at %(facility)s dispensed controlled items %(times)s of %(all)s in hours when the "
                     "facility rarely works, where colleagues' rate and their own other work predict %(expected)s "
                     "(chance %(chance)s); the largest: %(qty)s of %(item)s %(when)s.", user=code(row.recorded_by),
                     facility=code(row.facility_code), times=times(int(row.marked)), all=count(row.n),
                     expected=num(row.expected, 1), chance=sci(row.chance), qty=quantity(top.quantity, top.unit),
                     item=code(top.item_name), when=_when(top))
        hits.append(peers.user_hit(NAME, row, mine["entry_id"], reason, n_tested, controlled=int(row.n)))
    return hits
