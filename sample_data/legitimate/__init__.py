"""Legitimate behaviour of a real national ledger, the noise detectors must not mistake for leakage.

A ledger kept by people is untidy in ways that look like leakage to a naive rule: whole bottles
handed over for a smaller prescription, a quantity keyed ten times too large and corrected later,
patients collecting early or at another facility after an operation, a clinic that opens in
March, a regional outbreak, a fridge that fails, a recalled lot written off everywhere, stores that
pick short and correct it, deliveries arriving in two trips, staff who come and go. None of it is
in truth.csv.

``profile.draw`` gives each seed its own country: every rate and magnitude is drawn per seed from
the ranges in ``profile.RANGES``, and the ``shifted`` profile doubles them. The behaviours are
applied by ``counter`` (dispensing-side rows, in bulk with numpy), ``staff`` (who records what),
``shelves`` (stock-side rows, inside the stock simulation) and ``paperwork`` (which optional
columns a facility fills).
"""

from __future__ import annotations



import numpy as np

from sample_data.frames import Columns, events, prescriptions
from sample_data.legitimate import counter
from sample_data.legitimate.profile import Behaviours


def at_the_counter(rng: np.random.Generator, net, pts, tl, normal: Columns, rx_table: Columns, fills: Columns,
                   beh: Behaviours, *, duplicated: np.ndarray) -> tuple[Columns, Columns, dict[str, int]]:
    """Apply the counter's behaviours to the ordinary dispensings ``normal`` (in place) and return
    the events and prescriptions they add (prescriptions numbered after ``rx_table``'s).

    Dispensings of the prescriptions in ``duplicated`` (entered twice, the copy reversed) keep their
    quantity, so that the copy stays a copy.
    """
    keep = np.isin(normal["rx"], duplicated[duplicated >= 0])
    counts = {"whole_packs": counter.whole_packs(rng, normal, rx_table["qty"], beh, keep),
              "keyed_ten_marked": counter.keyed_ten(rng, normal, beh, keep)}
    parts_ev, parts_rx = [events(0)], [prescriptions(0)]
    ev, rx = counter.postop_courses(rng, net, pts, tl, fills, beh, rx_first=len(rx_table))
    counts["postop_dispensings"] = 0 if ev is None else len(ev)
    if ev is not None:
        parts_ev.append(ev)
        parts_rx.append(rx)
    ev, rx, described = counter.outbreaks(rng, net, pts, tl, normal, rx_table, beh,
                                          rx_first=len(rx_table) + sum(len(p) for p in parts_rx))
    counts["outbreaks"] = len(described)
    counts["outbreak_dispensings"] = 0 if ev is None else len(ev)
    if ev is not None:
        parts_ev.append(ev)
        parts_rx.append(rx)
    ev = counter.emergency_doses(rng, net, pts, tl, beh)
    counts["emergency_doses"] = 0 if ev is None else len(ev)
    if ev is not None:
        parts_ev.append(ev)
    ev = counter.breakage(rng, normal, beh)
    counts["extra_breakages"] = len(ev)
    parts_ev.append(ev)
    return Columns.concat(parts_ev), Columns.concat(parts_rx), counts
