"""Statistical and learned detectors on small hand-built ledgers: each fires on its pattern, stays
silent on the legitimate look-alike (a seasonal peak, a bigger facility, a hospital night shift,
colleagues who all work alike), its reason holds the right numbers, and the learned one is
deterministic and names the features that made a row unusual."""

from __future__ import annotations

import statistics
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from anomaly import features
from anomaly.detectors import consumption, isolation
from stock.masterdata import add_facility, add_item
from stock.settings import Detection
from tests.anomaly.helpers import at, post_all, run
from tests.stock.builders import build_world, entry

CENTRES = ("HC2", "HC3", "HC4", "HC5")


def _world(session, *extra: tuple[str, str]) -> None:
    """The builders' world, three more health centres and the facilities in ``extra``."""
    build_world(session)
    for code, kind in (("HC3", "health_center"), ("HC4", "health_center"), ("HC5", "health_center"),
                       *extra):
        add_facility(session, code, f"Facility {code}", "Tripoli", kind, parent_code="WH-C")
    add_item(session, "AMX", "Amoxicillin 500 mg capsule", "capsule", atc_code="J01CA04")
    add_item(session, "PCM", "Paracetamol 500 mg tablet", "tablet", atc_code="N02BE01")
    session.commit()


def _stock(session, facilities, items=("AMX",)) -> None:
    lots = {"AMX": "A1", "PCM": "P1", "MOR10": "L1", "GLOVE": ""}
    post_all(session, *[
        entry("receipt", 100_000, facility=f, item=i, lot=lots[i], at=at(1, 8, month=1),
              entry_id=f"stock-{f}-{i}", **({"expiry_date": None} if i == "GLOVE" else {}))
        for f in facilities for i in items])


def modified_z(values: list[float], x: float) -> float:
    """The modified z-score as the detectors document it, written out independently here."""
    med = statistics.median(values)
    dev = [abs(v - med) for v in values]
    mad = statistics.median(dev)
    if mad > 0:
        return 0.6745 * (x - med) / mad
    mean_ad = statistics.mean(dev)
    return (x - med) / (1.253314 * mean_ad) if mean_ad > 0 else 0.0


# ---------------------------------------------------------------- consumption

def _month(fac: str, month: int, *, patients: int = 12, extra: int = 0, repeat: int = 1, item: str = "AMX",
           quantity: float = 10) -> list:
    """A facility's month of an item: ``patients`` distinct patients, each dispensed ``quantity``
    ``repeat`` times, and the first ``extra`` of them once more. Rate per patient served:
    quantity * (patients * repeat + extra) / patients."""
    lot = {"AMX": "A1", "PCM": "P1"}[item]
    rows = []
    for k in range(patients):
        for r in range(repeat + (1 if k < extra else 0)):
            rows.append(entry("dispense", quantity, facility=fac, item=item, lot=lot, prescription_id=None,
                              health_card_id=f"{fac}-{k:03d}", recorded_by=f"{fac.lower()}-u1",
                              at=at(1 + (k + 9 * r) % 27, 9 + r, month=month),
                              entry_id=f"{fac}-{item}-{month}-{k}-{r}"))
    return rows


# Extra dispensings per month (Jan..Jun) at each centre: a little spread in every facility's rate,
# and the rest of the network at the same level each month, so that no seasonal rise is taken out.
EXTRAS = {"HC2": [1, 0, 2, 1, 0, 1], "HC3": [0, 1, 2, 1, 0, 1], "HC4": [2, 1, 0, 1, 1, 2],
          "HC5": [1, 1, 1, 1, 2, 0]}


def _rate(extra: int, patients: int = 12, repeat: int = 1) -> float:
    return 10 * (patients * repeat + extra) / patients


def _network(session, june: dict[str, dict]) -> None:
    """Six months of amoxicillin at four health centres; ``june`` overrides a centre's last month."""
    _world(session)
    _stock(session, CENTRES)
    rows = []
    for fac in CENTRES:
        for month in range(1, 7):
            spec = june.get(fac) if month == 6 else None
            rows += _month(fac, month, **(spec or {"extra": EXTRAS[fac][month - 1]}))
    post_all(session, *rows)


def test_consumption_fires_on_a_month_far_above_history_and_peers(session):
    _network(session, {"HC2": {"repeat": 3}})
    [hit] = run(session, "consumption")
    assert hit.subject == "facility_item" and hit.subject_id == "HC2:AMX:2026-06" and hit.facility_code == "HC2"
    assert set(hit.entry_ids) == {f"HC2-AMX-6-{k}-{r}" for k in range(12) for r in range(3)}

    own = [_rate(e) for e in EXTRAS["HC2"][:5]] + [30.0]
    peers = [30.0] + [_rate(EXTRAS[f][5]) for f in CENTRES[1:]]
    own_z, peer_z = modified_z(own, 30.0), modified_z(peers, 30.0)
    assert round(own_z, 1) == 15.5 and round(peer_z, 1) == 15.2  # the hand-made figures, for the reader
    assert hit.reason == (
        "HC2 dispensed 360 capsules of Amoxicillin 500 mg capsule in 2026-06 in 36 dispensings to 12 patients, "
        f"30 per patient served (12), against its own median of {statistics.median(own):.2f} over 6 months "
        f"(z={own_z:.1f}) and a median of {statistics.median(peers):.2f} at 3 other health centres "
        f"(z={peer_z:.1f}).")
    assert hit.details["patients_served"] == 12 and hit.details["history_months"] == 5 and hit.details["peers"] == 3
    assert 0.75 < hit.score <= 0.85


def test_consumption_silent_on_a_seasonal_peak_every_peer_shares(session):
    _network(session, {fac: {"repeat": 3} for fac in CENTRES})
    assert run(session, "consumption") == []


def test_consumption_silent_on_a_facility_ten_times_larger_with_ten_times_the_patients(session):
    """HC6 dispenses ten times what each other centre does, every month, to ten times the patients."""
    _world(session, ("HC6", "health_center"))
    _stock(session, (*CENTRES, "HC6"))
    rows = []
    for month in range(3, 7):
        for fac in CENTRES:
            rows += _month(fac, month, extra=EXTRAS[fac][month - 1])
        rows += _month("HC6", month, patients=120, extra=10 * EXTRAS["HC2"][month - 1])
    post_all(session, *rows)
    assert run(session, "consumption") == []
    # Its volume alone is far beyond its peers: only the rate per patient served makes it ordinary.
    grid = consumption.monthly_rates(features.build(session, Detection()).dispenses)
    june = grid[grid["month"] == pd.Timestamp("2026-06-01")].set_index("facility_code")
    assert june.at["HC6", "quantity"] >= 8 * june["quantity"].drop("HC6").max()
    assert june.at["HC6", "rate"] <= 1.1 * june["rate"].drop("HC6").max()


def test_consumption_with_zero_mad_flags_a_tripling_but_not_a_tiny_rise(session):
    """Every centre at exactly 10 per patient served every month (MAD = 0 in every comparison).
    Amoxicillin triples at HC2 in June: the mean-deviation fallback gives finite z-scores and
    the month is flagged. Paracetamol rises a tenth there, handed out in three small fills instead
    of one: the same z-scores, since they measure against no spread, and far more dispensings than
    chance gives, but far below twice the median, so it is not flagged."""
    _world(session)
    _stock(session, CENTRES, items=("AMX", "PCM"))
    rows = []
    for fac in CENTRES:
        for month in range(1, 7):
            if fac == "HC2" and month == 6:
                rows += _month(fac, month, repeat=3)
                rows += [entry("dispense", q, facility=fac, item="PCM", lot="P1", prescription_id=None,
                               health_card_id=f"{fac}-{k:03d}", at=at(1 + k + 9 * r, 9, month=month),
                               entry_id=f"split-{k}-{r}")
                         for k in range(12) for r, q in enumerate((4, 4, 3))]
            else:
                rows += _month(fac, month) + _month(fac, month, item="PCM")
    post_all(session, *rows)
    [hit] = run(session, "consumption")
    assert hit.subject_id == "HC2:AMX:2026-06"
    own_z = modified_z([10.0] * 5 + [30.0], 30.0)
    peer_z = modified_z([30.0, 10.0, 10.0, 10.0], 30.0)
    assert (f"{own_z:.1f}", f"{peer_z:.1f}") == ("4.8", "3.2")
    assert f"its own median of 10 over 6 months (z={own_z:.1f})" in hit.reason
    assert f"a median of 10 at 3 other health centres (z={peer_z:.1f})" in hit.reason
    assert np.isfinite(hit.details["own_z"]) and np.isfinite(hit.details["peer_z"])


def test_robust_z_of_identical_values_is_zero_not_a_division_by_zero():
    frame = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 4})
    x = pd.Series([5.0, 5.0, 5.0, 5.0, 1.0, 1.0, 1.0, 4.0])
    out = consumption.robust_z(x, frame, ["g"])
    assert out["z"].tolist()[:4] == [0.0] * 4
    assert np.isfinite(out["z"]).all()
    assert out["z"].iat[7] == pytest.approx(modified_z([1.0, 1.0, 1.0, 4.0], 4.0))


# ---------------------------------------------------------------- users

def _shift(fac: str, user: str, rows: list[tuple[str, int]], *, days: int = 5) -> list:
    """A user's dispensings: (item, local hour) each, dealt over ``days`` days from 2 March."""
    lots = {"MOR10": "L1", "GLOVE": ""}
    return [entry("dispense", 2 if item == "GLOVE" else 10, facility=fac, item=item, lot=lots[item],
                  prescription_id=None, health_card_id=f"{fac}-{user}-{i % 7}", recorded_by=user,
                  at=at(2 + i % days, hour), entry_id=f"{fac}-{user}-{i}")
            for i, (item, hour) in enumerate(rows)]


def _day(n: int, item: str = "GLOVE") -> list[tuple[str, int]]:
    return [(item, 9 + i % 8) for i in range(n)]


def test_users_fire_on_off_hours_rate_and_controlled_share(session):
    _world(session)
    _stock(session, CENTRES[:3], items=("MOR10", "GLOVE"))
    rows = []
    # HC2: s-night records four of five narcotics at 23:00; cn1 once, the others never.
    rows += _shift("HC2", "s-night", _day(20) + [("MOR10", 14)] + [("MOR10", 23)] * 4)
    rows += _shift("HC2", "cn1", _day(20) + _day(4, "MOR10") + [("MOR10", 23)])
    rows += _shift("HC2", "cn2", _day(20) + _day(5, "MOR10"))
    rows += _shift("HC2", "cn3", _day(20) + _day(5, "MOR10"))
    # HC3: s-fast records 12 dispensings a day where colleagues record about 4.
    rows += _shift("HC3", "s-fast", _day(60))
    rows += _shift("HC3", "cf1", _day(20)) + _shift("HC3", "cf2", _day(21)) + _shift("HC3", "cf3", _day(19))
    # HC4: s-ctrl's dispensings are 60% narcotics where colleagues' are 10-20%.
    rows += _shift("HC4", "s-ctrl", _day(8) + _day(12, "MOR10"))
    for user, narcotics in (("cc1", 2), ("cc2", 3), ("cc3", 4)):
        rows += _shift("HC4", user, _day(20 - narcotics) + _day(narcotics, "MOR10"))
    post_all(session, *rows)

    hits = {h.subject_id: h for h in run(session, "users")}
    assert set(hits) == {"s-night", "s-fast", "s-ctrl"}
    assert all(h.subject == "user" and 0.5 < h.score <= 0.9 for h in hits.values())

    night = hits["s-night"]
    assert night.facility_code == "HC2"
    assert set(night.entry_ids) == {f"HC2-s-night-{i}" for i in range(21, 25)}
    off_z = modified_z([0.2, 0.0, 0.0], 0.8)  # colleagues' MAD is 0: the mean deviation stands in
    assert night.reason == (
        "s-night dispensed 80% of their controlled items (4 of 5) between 22:00 and 06:00, against 0% of "
        f"their other dispensings and a median of 0% for 3 colleagues at HC2 (z={off_z:.1f}).")

    fast = hits["s-fast"]
    rate_z = modified_z([4.0, 4.2, 3.8], 12.0)
    assert fast.reason == ("s-fast recorded 12.0 dispensings a day over 5 days against a median of 4.0 for "
                           f"3 colleagues at HC3 (z={rate_z:.1f}) (the 50 largest of 60 such dispensings "
                           "are cited).")
    assert len(fast.entry_ids) == 50 and fast.details["rate"]["value"] == 12.0

    ctrl = hits["s-ctrl"]
    share_z = modified_z([0.10, 0.15, 0.20], 0.60)
    assert ctrl.reason == ("s-ctrl dispensed controlled items in 60% of their dispensings (12 of 20) against a "
                           f"median of 15% for 3 colleagues at HC4 (z={share_z:.1f}).")
    assert set(ctrl.entry_ids) == {f"HC4-s-ctrl-{i}" for i in range(8, 20)}


def test_users_silent_on_a_hospital_night_shift_a_busier_facility_and_tiny_differences(session):
    _world(session)
    _stock(session, ("H1", "HC2"), items=("MOR10", "GLOVE"))
    rows = []
    # H1 works three times HC2's pace, round the clock: four day staff and two who work only nights,
    # narcotics and everything else alike.
    for user in ("d1", "d2", "d3", "d4"):
        rows += _shift("H1", user, _day(50) + _day(10, "MOR10"))
    for user in ("n1", "n2"):
        hours = [22, 23, 0, 1, 2, 3]
        rows += _shift("H1", user, [("GLOVE", hours[i % 6]) for i in range(50)]
                       + [("MOR10", hours[i % 6]) for i in range(10)])
    # HC2: three colleagues exactly alike (every MAD is 0), a fourth a shade busier and with two more
    # narcotics.
    for user in ("c1", "c2", "c3"):
        rows += _shift("HC2", user, _day(18) + _day(2, "MOR10"))
    rows += _shift("HC2", "c4", _day(18) + _day(4, "MOR10"))
    post_all(session, *rows)
    assert run(session, "users") == []


def test_users_night_shift_look_alike_fires_when_only_the_narcotics_go_out_at_night(session):
    """The same hospital, but n1's gloves go out by day while the narcotics still go out at night."""
    _world(session)
    _stock(session, ("H1",), items=("MOR10", "GLOVE"))
    rows = []
    for user in ("d1", "d2", "d3", "d4"):
        rows += _shift("H1", user, _day(50) + _day(10, "MOR10"))
    hours = [22, 23, 0, 1, 2, 3]
    rows += _shift("H1", "n2", [("GLOVE", hours[i % 6]) for i in range(50)]
                   + [("MOR10", hours[i % 6]) for i in range(10)])
    rows += _shift("H1", "n1", _day(50) + [("MOR10", hours[i % 6]) for i in range(10)])
    post_all(session, *rows)
    [hit] = run(session, "users")
    assert hit.subject_id == "n1"
    assert "100% of their controlled items (10 of 10) between 22:00 and 06:00, against 0% of their other " \
           "dispensings and a median of 0% for 5 colleagues at H1" in hit.reason


def test_users_off_hours_at_a_small_facility_are_compared_with_the_region(session):
    """HC2 has one colleague, too few to compare with: s-night's off-hours narcotics are measured
    against the staff of the region's health centres instead."""
    _world(session)
    _stock(session, ("HC2", "HC3"), items=("MOR10", "GLOVE"))
    rows = _shift("HC2", "s-night", _day(20) + [("MOR10", 14)] + [("MOR10", 23)] * 4)
    rows += _shift("HC2", "cn1", _day(20) + _day(5, "MOR10"))
    for user in ("r1", "r2", "r3"):
        rows += _shift("HC3", user, _day(20) + _day(5, "MOR10"))
    post_all(session, *rows)
    [hit] = run(session, "users")
    assert hit.subject_id == "s-night" and hit.facility_code == "HC2"
    assert hit.reason == (
        "s-night dispensed 80% of their controlled items (4 of 5) between 22:00 and 06:00, against 0% of "
        "their other dispensings and a median of 0% for 4 staff of 2 health centres in Tripoli, HC2 having "
        "too few (none of them dispensing controlled items then).")
    assert hit.details["off_hours"]["group"] == "region" and hit.details["off_hours"]["z"] is None


# ---------------------------------------------------------------- isolation

def _ordinary(n: int = 250) -> list:
    """A hospital's ordinary day: narcotics and gloves in usual amounts, by five users, 8:00-17:00."""
    rows = []
    for k in range(n):
        item, lot = ("MOR10", "L1") if k % 2 else ("GLOVE", "")
        rows.append(entry("dispense", [5, 10, 10, 15, 10][k % 5], item=item, lot=lot, prescription_id=None,
                          health_card_id=f"P{k:04d}", recorded_by=f"u{1 + (k // 3) % 5}",
                          at=at(2, 8 + k % 10) + timedelta(days=k // 5), entry_id=f"O{k:04d}"))
    return rows


def _hospital(session, *extra) -> None:
    _world(session)
    _stock(session, ("H1",), items=("MOR10", "GLOVE"))
    post_all(session, *_ordinary(), *extra)


ODD = dict(item="MOR10", lot="L1", prescription_id=None, health_card_id="P9999", recorded_by="u9")


def test_isolation_flags_the_unusual_dispensing_and_names_why(session):
    _hospital(session, entry("dispense", 300, at=at(15, 3, month=4), entry_id="ISO-odd", **ODD))
    [hit] = run(session, "isolation")
    assert hit.subject == "entry" and hit.entry_ids == ("ISO-odd",) and hit.facility_code == "H1"
    assert hit.details["explained_by"] == ["quantity_x", "hour_rarity", "patient_30d_x"]
    assert hit.reason == (
        "Unusual dispensing: 300 tablets of Morphine 10 mg tablet (controlled) by u9 at H1 on 2026-04-15, "
        "quantity 30x the usual for this item; at 03:00, when colleagues at H1 record 0.1% of their "
        "dispensings (within the hour either side); the patient's 1st visit for it in 30 days, 30x the "
        "usual 30-day amount.")
    assert hit.details["quantity_x"] == 30.0 and hit.details["controlled"] == 1.0
    assert hit.score == isolation.SCORE_TOP  # the most unusual row of all


def test_isolation_is_deterministic(session):
    _hospital(session, entry("dispense", 300, at=at(15, 3, month=4), entry_id="ISO-odd", **ODD))
    first, second = run(session, "isolation"), run(session, "isolation")
    assert first and first == second
    assert [(h.score, h.reason, h.details) for h in first] == [(h.score, h.reason, h.details) for h in second]
    # Another seed grows other trees, but this row is unusual enough for any of them.
    assert [h.entry_ids for h in run(session, "isolation", Detection(random_state=7))] == [("ISO-odd",)]


def test_isolation_silent_on_unusual_but_innocent_rows(session):
    """A single tablet, and two staff who work nights together: the forest finds them unusual,
    but nothing about them points towards leakage, so nothing is flagged."""
    hours = [1, 2, 3, 1, 2, 3, 1, 2, 3, 2]
    nights = [entry("dispense", 10, at=at(1 + i, hours[i], month=4), entry_id=f"N-{who}-{i}",
                    **{**ODD, "recorded_by": who, "health_card_id": f"N{who}{i}"})
              for who in ("n1", "n2") for i in range(10)]
    _hospital(session, entry("dispense", 1, at=at(15, 10, month=4), entry_id="ISO-one", **ODD), *nights)
    assert run(session, "isolation") == []
    frames = features.build(session, Detection())
    d = frames.dispenses.sort_values("seq")
    f = isolation.dispensing_features(d, frames.prescriptions)
    rows, _ = isolation._unusual(f[list(isolation.DISPENSING_FEATURES)], frames.settings)
    chosen = set(d["entry_id"].iloc[rows])
    assert chosen and chosen <= {"ISO-one", *(e.entry_id for e in nights)}, chosen


def test_isolation_needs_enough_rows_to_learn_what_is_usual(session):
    _world(session)
    _stock(session, ("H1",), items=("MOR10", "GLOVE"))
    post_all(session, *_ordinary(40), entry("dispense", 300, at=at(15, 3, month=4), entry_id="ISO-odd", **ODD))
    assert run(session, "isolation") == []
