"""Who works when, and who records what.

Opening days and night shifts are set on the network before any demand is drawn, so every stage
(the ordinary demand and the incidents alike) follows them. Who recorded each row is decided last,
on the finished ledger: some staff do far more of the work than others, hospital rows between
20:00 and 08:00 go to the night shift, and at some facilities someone leaves during the period and
a newcomer (a new user id) takes over. The users that incidents are about stay as they are, and
never leave.
"""

from __future__ import annotations

import numpy as np

from sample_data.frames import DAY, HOUR, Timeline
from sample_data.legitimate.profile import Behaviours
from sample_data.network import HEALTH_CENTER, Network
from sample_data.output import LedgerRows

FRIDAY, SATURDAY = 4, 5


def shape_network(rng: np.random.Generator, net: Network, beh: Behaviours) -> None:
    """Health centres close on Friday, and many on Saturday too; the night shift's share of a
    hospital's work is this country's."""
    closed = np.zeros((net.size, 7), bool)
    hc = net.kind == HEALTH_CENTER
    closed[hc, FRIDAY] = True
    closed[hc & (rng.random(net.size) < beh.saturday_closed_share), SATURDAY] = True
    net.closed = closed
    net.night_share = beh.night_share


def assign(rng: np.random.Generator, net: Network, tl: Timeline, led: LedgerRows, beh: Behaviours) -> dict:
    """Re-pick who recorded each row not tied to an incident; returns what changed."""
    protected = set(led.user[led.inc >= 0].tolist())
    user, fac, start, end, night = [], [], [], [], []
    leavers = joiners = 0
    end_t = tl.n_days * DAY
    # Where someone can leave: two or more on the day shift, one of them not tied to an incident.
    day_count = net.user_count - net.night_users
    eligible = [f for f in range(net.size) if day_count[f] >= 2 and any(
        u not in protected for u in range(int(net.user_offset[f]), int(net.user_offset[f] + day_count[f])))]
    n_change = min(max(1, int(round(beh.staff_change_share * net.size))), len(eligible))
    changing = set(rng.choice(np.array(eligible, np.int64), size=n_change, replace=False).tolist())
    for f in range(net.size):
        first, n, n_night = int(net.user_offset[f]), int(net.user_count[f]), int(net.night_users[f])
        day_staff = list(range(first, first + n - n_night))
        for u in range(first, first + n):
            user.append(u)
            fac.append(f)
            start.append(0)
            end.append(end_t + DAY)
            night.append(u >= first + n - n_night)
        if f not in changing:
            continue
        free = [u for u in day_staff if u not in protected]
        gone = free[int(rng.integers(0, len(free)))]
        leave = int(rng.integers(int(tl.n_days * 0.2), int(tl.n_days * 0.8) + 1)) * DAY
        end[user.index(gone)] = leave
        leavers += 1
        arrive = leave + int(rng.integers(0, 15)) * DAY
        # The newcomer gets the next user id of the facility.
        net.user_ids.append(f"u-{net.codes[f]}-{n + 1:02d}")
        user.append(len(net.user_ids) - 1)
        fac.append(f)
        start.append(arrive)
        end.append(end_t + DAY)
        night.append(False)
        joiners += 1
    user, fac, start, end, night = (np.array(x) for x in (user, fac, start, end, night))
    weight = rng.lognormal(0.0, beh.workload_spread, len(user))

    rows = np.flatnonzero(led.inc < 0)
    rows = rows[np.argsort(led.fac[rows], kind="stable")]
    bounds = np.flatnonzero(np.diff(led.fac[rows])) + 1
    roster_order = np.argsort(fac, kind="stable")
    roster_bounds = np.searchsorted(fac[roster_order], np.arange(net.size + 1))
    u_all = rng.random(len(rows))
    pos = 0
    for idx in np.split(rows, bounds):
        if len(idx) == 0:
            continue
        f = int(led.fac[idx[0]])
        r = roster_order[roster_bounds[f]:roster_bounds[f + 1]]
        t = led.t[idx]
        hour = (t % DAY) // HOUR
        at_night = (hour >= 20) | (hour < 8)
        active = (t[:, None] >= start[r][None, :]) & (t[:, None] < end[r][None, :])
        w = active * weight[r][None, :]
        if night[r].any():
            shift = at_night[:, None] == night[r][None, :]
            ws = w * shift
            w = np.where(ws.sum(axis=1, keepdims=True) > 0, ws, w)
        w = np.where(w.sum(axis=1, keepdims=True) > 0, w, weight[r][None, :])
        cum = np.cumsum(w, axis=1)
        target = u_all[pos:pos + len(idx)] * cum[:, -1]
        pos += len(idx)
        pick = np.minimum((cum <= target[:, None]).sum(axis=1), len(r) - 1)
        led.user[idx] = user[r][pick]
    return {"leavers": leavers, "joiners": joiners}
