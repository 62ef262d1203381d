"""Figures that do not add up: within a month (arithmetic), between months (carry-over), and
consumption beyond the stock there was (overdraw).

Before a figure that does not add up is called a loss, two honest explanations are taken out:

- A figure that undoes another. Stock that disappears between two reports and comes back a month
  later, phantom stock that a later write-off removes, a zeroed opening whose stock is re-entered
  as an adjustment: every unexplained change (carry-over gap, arithmetic difference) and every
  adjustment of a facility and item is netted against changes of the other sign within
  UNDO_MONTHS months, nearest first, and only what nothing undoes is a finding, to the extent
  nothing undoes it (a +1 does not excuse 89).
- A unit change. A figure that is a whole number of packs times the other (4,320 after 30, where a
  box holds 144) is one count made in packs and the other in units: when the ratio is a pack size
  the item's name states, the difference is not a finding at all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache

import numpy as np
import pandas as pd

from stock.messages import code, join, month, msg, num, pct
from stock.messages import qty as quantity
from anomaly.reports.surprise import Finding, rarity

UNDO_MONTHS = 3
"""A change this many months before or after another of the other sign can undo it."""


@cache
def pack_sizes(name: str) -> frozenset[int]:
    """Whole numbers of 2 or more in an item's name ("BTE/144", "box of 3 cycles"): what a pack may hold."""
    return frozenset(int(n) for n in re.findall(r"(?<![\d.,])(\d+)(?![\d.,]\d)", name) if int(n) >= 2)


def unit_change(a: float, b: float, name: str) -> int | None:
    """The pack size k when one figure is exactly k times the other and the item's name states k."""
    small, big = sorted((abs(a), abs(b)))
    if small <= 0 or big % small:
        return None
    k = int(big // small)
    return k if k in pack_sizes(name) else None


def _of(row):
    return msg("%(name)s (%(code)s)", name=code(row.item_name), code=code(row.item_code))


def net(r: pd.DataFrame) -> pd.DataFrame:
    """Per report: the carry-over gap and arithmetic difference (signed, units) and what of them and
    of the adjustment is left once changes of the other sign within UNDO_MONTHS undo each other,
    with the references of the undoing reports."""
    out = pd.DataFrame(index=r.index)
    follows = ((r["facility_code"] == r["facility_code"].shift()) & (r["item_code"] == r["item_code"].shift())
               & (r["month_no"] == r["month_no"].shift() + 1))
    out["follows"] = follows
    out["prev_closing"] = r["closing"].shift().where(follows)
    out["prev_ref"] = r["ref"].shift().where(follows)
    out["prev_period"] = r["period"].shift().where(follows)
    gap = ((r["opening_m"] - r["closing_m"].shift()) / 1000.0).where(follows, 0.0)
    arith = (r["closing_m"] - (r["opening_m"] + r["received_m"] - r["consumed_m"] + r["adjustment_m"])) / 1000.0
    out["gap"], out["arith"] = gap, arith
    left = {"gap": gap.copy(), "arith": arith.copy(), "adjustment": r["adjustment"].copy()}
    undone_by: dict[tuple[str, int], list[str]] = defaultdict(list)
    moving = r.index[(gap != 0) | (arith != 0) | (r["adjustment"] != 0)]
    sub = r.loc[moving, ["facility_code", "item_code", "month_no", "ref"]]
    for _, grp in sub.groupby(["facility_code", "item_code"], sort=False):
        moves = [(i, kind, m, ref) for i, m, ref in zip(grp.index, grp["month_no"], grp["ref"])
                 for kind in ("gap", "arith", "adjustment") if left[kind][i] != 0]
        for i, kind, m, ref in sorted((x for x in moves if left[x[1]][x[0]] < 0), key=lambda x: x[2]):
            others = sorted((x for x in moves if left[x[1]][x[0]] > 0 and abs(x[2] - m) <= UNDO_MONTHS
                             and not (kind == "adjustment" and x[1] == "adjustment" and x[0] == i)),
                            key=lambda x: (abs(x[2] - m), x[2]))
            for j, other, _, other_ref in others:
                if left[kind][i] >= 0:
                    break
                take = min(-left[kind][i], left[other][j])
                left[kind][i] += take
                left[other][j] -= take
                undone_by[(kind, i)].append(other_ref)
                undone_by[(other, j)].append(ref)
    for kind in ("gap", "arith", "adjustment"):
        out[f"{kind}_left"] = left[kind]
        out[f"{kind}_undone_by"] = [sorted(set(undone_by.get((kind, i), []))) for i in r.index]
    return out


def _undo_text(original: float, left: float, refs: list[str]):
    if not refs or original == left:
        return join([])
    months = [month(m) for m in sorted({ref.split("/")[-1].split("#")[0] for ref in refs})]
    return msg("; figures of %(months)s undo %(undone)s of it, leaving %(left)s", months=join(months, ","),
               undone=num(abs(original - left)), left=num(abs(left)))


def _unexplained(r: pd.DataFrame, left: pd.Series, figure: pd.Series, expected: pd.Series, base: pd.Series):
    """What nothing undoes, unless the figure is a stated pack size times the one expected; and its
    evidence: a loss before a surplus, then the share of the stock, then the units."""
    finding = (left != 0) & ~pd.Series([bool(f) and unit_change(a, b, n) is not None for f, a, b, n in
                                        zip(left != 0, figure, expected, r["item_name"])], index=r.index)
    evidence = pd.DataFrame({"loss": (left < 0).astype(int), "share": (left.abs() / base).where(finding, 0.0),
                             "units": left.abs().where(finding, 0.0)})
    return finding, evidence


def arithmetic(r: pd.DataFrame, moves: pd.DataFrame) -> list[Finding]:
    """Closing differs from opening + received - consumed + adjustment, by more than other figures undo.

    Less stock at the close than the figures leave (stock gone unrecorded, the pattern of leakage)
    outranks more stock (an unrecorded receipt or a miscount)."""
    left = moves["arith_left"]
    base = np.maximum(np.maximum(r["opening"] + r["received"], r["consumed"]), 1.0)
    expected = r["closing"] - moves["arith"]
    finding, evidence = _unexplained(r, left, r["closing"], expected, base)
    p = rarity(evidence, finding, r)
    out = []
    for i, pi in p.items():
        row, diff, orig = r.loc[i], left[i], moves.at[i, "arith"]
        gap = (msg("%(qty)s fewer than the figures leave", qty=quantity(-diff, row.unit)) if diff < 0
               else msg("%(qty)s more than the figures leave", qty=quantity(diff, row.unit)))
        reason = msg("%(facility)s reported a closing stock of %(closing)s of %(item)s for %(period)s, but opening "
                     "%(opening)s + received %(received)s - consumed %(consumed)s + adjustment %(adjustment)s = "
                     "%(expected)s: %(gap)s%(undo)s (%(share)s of the stock handled).",
                     facility=code(row.facility_code), closing=quantity(row.closing, row.unit), item=_of(row),
                     period=month(row.period), opening=num(row.opening), received=num(row.received),
                     consumed=num(row.consumed), adjustment=num(row.adjustment), expected=num(expected[i]),
                     gap=gap if orig == diff else msg("a difference of %(difference)s", difference=num(orig)),
                     undo=_undo_text(orig, diff, moves.at[i, 'arith_undone_by']), share=pct(abs(diff) / base[i]))
        out.append(Finding("report_arithmetic", row.facility_code, row.item_code, int(row.month_no), row.ref,
                           row.period, float(pi), reason, [row.ref],
                           {"expected_closing": float(expected[i]), "closing": float(row.closing),
                            "difference": float(orig), "not_undone": float(diff)}))
    return out


def carryover(r: pd.DataFrame, moves: pd.DataFrame) -> list[Finding]:
    """A month's opening differs from the previous month's closing (consecutive months only), by
    more than other figures undo and not by a pack-size factor.

    Stock that disappeared between two reports, outside any month's figures, outranks stock that
    appeared."""
    left = moves["gap_left"]
    before = moves["prev_closing"].fillna(0)
    finding, evidence = _unexplained(r, left, before, r["opening"], np.maximum(np.maximum(before, r["opening"]), 1.0))
    p = rarity(evidence[moves["follows"]], finding[moves["follows"]], r)
    out = []
    for i, pi in p.items():
        row, gap, orig = r.loc[i], left[i], moves.at[i, "gap"]
        what = (msg("%(qty)s disappeared between the two reports", qty=quantity(-orig, row.unit)) if orig < 0
                else msg("%(qty)s appeared between the two reports", qty=quantity(orig, row.unit)))
        reason = msg("%(facility)s closed %(previous)s with %(closing)s of %(item)s but opened %(period)s with "
                     "%(opening)s: %(what)s%(undo)s.", facility=code(row.facility_code),
                     previous=month(moves.at[i, 'prev_period']),
                     closing=quantity(moves.at[i, 'prev_closing'], row.unit), item=_of(row),
                     period=month(row.period), opening=num(row.opening), what=what,
                     undo=_undo_text(orig, gap, moves.at[i, 'gap_undone_by']))
        out.append(Finding("report_carryover", row.facility_code, row.item_code, int(row.month_no), row.ref,
                           row.period, float(pi), reason, [moves.at[i, "prev_ref"], row.ref],
                           {"previous_closing": float(moves.at[i, "prev_closing"]), "opening": float(row.opening),
                            "gap": float(orig), "not_undone": float(gap)}))
    return out


def overdraw(r: pd.DataFrame, moves: pd.DataFrame) -> list[Finding]:
    """Consumed more than was available (opening + received + a positive adjustment).

    Consumption beyond opening + receipts made possible only by a positive adjustment is also a
    finding: a paper adjustment that covers consumption of stock never received is how a balanced
    report hides a diversion, though stock borrowed from a neighbour looks the same. Such a cover
    needs a positive adjustment, so it is ranked among the data's positive adjustments (by the share
    of the month's consumption it covers), where a true overdraw is ranked among all reports. Not
    when there was no opening stock and nothing received (the adjustment is then simply how the
    month's stock was written in), nor when the consumption, read in packs of a size the item's
    name states, fits in the opening stock and receipts (units counted against stock in packs)."""
    stocked = r["opening"] + r["received"]
    available = stocked + r["adjustment"].clip(lower=0)
    over = r["consumed_m"] > r["opening_m"] + r["received_m"] + r["adjustment_m"].clip(lower=0)
    covered = ~over & (r["consumed_m"] > r["opening_m"] + r["received_m"]) & (r["adjustment_m"] > 0)
    covered &= r["opening_m"] + r["received_m"] > 0
    # Consumption counted in units against stock counted in packs: read in packs of a size the
    # item's name states, it fits in the stock there was.
    in_units = pd.Series([bool(f) and any(c % k == 0 and c / k <= have for k in pack_sizes(name))
                          for f, c, have, name in zip(over | covered, r["consumed"], stocked, r["item_name"])],
                         index=r.index)
    over &= ~in_units
    covered &= ~in_units
    excess = pd.Series(np.where(over, r["consumed"] - available, r["consumed"] - stocked), index=r.index)
    p_over = rarity(pd.DataFrame({"share": (excess / np.maximum(available, 1.0)).where(over, 0.0),
                                  "units": excess.where(over, 0.0)}), over, r)
    topped_up = r["adjustment_m"] > 0
    p_cover = rarity(pd.DataFrame({"share": (excess / r["consumed"].clip(lower=1.0)).where(covered, 0.0),
                                   "units": excess.where(covered, 0.0)})[topped_up], covered[topped_up], r)
    p = pd.concat([p_over, p_cover])
    excess = excess.to_numpy()
    out = []
    for i, pi in p.items():
        row = r.loc[i]
        if over[i]:
            reason = msg("%(facility)s reported consuming %(consumed)s of %(item)s in %(period)s with only "
                         "%(available)s available (opening %(opening)s + received %(received)s%(adjustment)s): "
                         "%(excess)s more than there was.", facility=code(row.facility_code),
                         consumed=quantity(row.consumed, row.unit), item=_of(row), period=month(row.period),
                         available=num(available[i]), opening=num(row.opening), received=num(row.received),
                         adjustment=(msg(" + adjustment %(adjustment)s", adjustment=num(row.adjustment))
                                     if row.adjustment > 0 else join([])),
                         excess=num(excess[r.index.get_loc(i)]))
            details = {"available": float(available[i]), "consumed": float(row.consumed),
                       "excess": float(excess[r.index.get_loc(i)])}
        else:
            reason = msg("%(facility)s reported consuming %(consumed)s of %(item)s in %(period)s with opening "
                         "%(opening)s + received %(received)s = %(stocked)s; a positive adjustment of %(adjustment)s "
                         "covers the %(excess)s consumed beyond that.", facility=code(row.facility_code),
                         consumed=quantity(row.consumed, row.unit), item=_of(row), period=month(row.period),
                         opening=num(row.opening), received=num(row.received), stocked=num(stocked[i]),
                         adjustment=num(row.adjustment), excess=num(excess[r.index.get_loc(i)]))
            details = {"opening_plus_received": float(stocked[i]), "consumed": float(row.consumed),
                       "adjustment": float(row.adjustment), "covered_by_adjustment": float(excess[r.index.get_loc(i)])}
        out.append(Finding("report_overdraw", row.facility_code, row.item_code, int(row.month_no), row.ref,
                           row.period, float(pi), reason, [row.ref], details))
    return out
