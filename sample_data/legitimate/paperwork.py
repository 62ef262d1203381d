"""Which optional columns a facility fills, and when its rows were recorded.

The contract's optional columns are often empty in real data, and nothing may depend on them: some
facilities write no document numbers (so the two legs of a transfer do not always share one),
some systems export no ``recorded_at``. Where it is written, most rows are recorded a minute or
two after they happened; facilities keeping paper registers key them in after the fact (a health
centre at the end of its morning, a hospital's night shift the next morning, a store the next
working morning).

A facility's recording times never run backwards in file order, so applying its rows in recording
order or in ``occurred_at`` order is the same thing, and both stay above zero.
"""

from __future__ import annotations

import numpy as np

from sample_data.frames import DAY, HOUR, Timeline
from sample_data.legitimate.profile import Behaviours
from sample_data.network import HEALTH_CENTER, HOSPITAL, PHARMACY, WAREHOUSE, Network
from sample_data.output import LedgerRows


def _some(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """A mask of ``share`` of ``n`` facilities, at least one."""
    mask = np.zeros(n, bool)
    mask[rng.choice(n, size=min(n, max(1, int(round(share * n)))), replace=False)] = True
    return mask


def apply(rng: np.random.Generator, net: Network, tl: Timeline, led: LedgerRows,
          beh: Behaviours) -> tuple[np.ndarray, dict]:
    """Empty the document numbers of facilities that write none (in ``led``), and return each
    row's recording time in seconds from the start (-1: not written) and a summary."""
    no_doc = _some(rng, net.size, beh.no_document_share)
    no_doc[net.central] = False
    no_rec = _some(rng, net.size, beh.no_recorded_at_share)
    batch = _some(rng, net.size, beh.batch_keying_share)
    batch &= ~no_rec
    led.doc[no_doc[led.fac] & (led.doc != "")] = ""

    t = led.t
    n = len(t)
    rec = t + np.minimum(rng.exponential(90.0, n), 1800).astype(np.int64)
    day, sec = np.divmod(t, DAY)
    kind = net.kind[led.fac]
    late = batch[led.fac]
    jitter = rng.integers(0, HOUR, n)
    # Health centres and pharmacies key the morning's register at the end of the day's service.
    counter = late & np.isin(kind, (HEALTH_CENTER, PHARMACY)) & (sec < 16 * HOUR)
    rec[counter] = day[counter] * DAY + 16 * HOUR + jitter[counter]
    # A hospital's night shift is keyed by the morning staff.
    night = late & (kind == HOSPITAL) & ((sec >= 20 * HOUR) | (sec < 8 * HOUR))
    morning = np.where(sec >= 20 * HOUR, day + 1, day)
    rec[night] = morning[night] * DAY + 8 * HOUR + jitter[night]
    # Stores key their paperwork the next morning.
    store = late & (kind == WAREHOUSE)
    rec[store] = (day[store] + 1) * DAY + 8 * HOUR + jitter[store]
    rec = np.maximum(rec, t)
    # The export is taken at the end of the period's last day: what would be keyed the next
    # morning is keyed by then (a demo's data end yesterday, and nothing is recorded in the future).
    rec = np.minimum(rec, tl.n_days * DAY - 1)

    # Never backwards within a facility, in file order.
    order = np.argsort(led.fac, kind="stable")
    span = int(rec.max(initial=0)) + 1
    shifted = led.fac[order].astype(np.int64) * span + rec[order]
    rec[order] = np.maximum.accumulate(shifted) - led.fac[order].astype(np.int64) * span
    rec[no_rec[led.fac]] = -1
    summary = {"facilities_without_document_numbers": int(no_doc.sum()),
               "facilities_without_recorded_at": int(no_rec.sum()),
               "facilities_keying_after_the_fact": int(batch.sum()),
               "rows_recorded_an_hour_or_more_late": int(((rec - t) >= HOUR).sum())}
    return rec, summary
