"""The legitimate behaviours of a real ledger are in the generated data, with the right shape, and
never in truth.csv.

Like test_generator.py, these tests read the CSV files back as text and find each behaviour by what
an auditor would see in the ledger, not by asking the generator what it did.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from typer.testing import CliRunner

from sample_data.generator import FILES, generate, main
from sample_data.legitimate.profile import RANGES, draw
from stock import balances, chain
from stock.importer import import_dataset
from tests.sample_data.test_generator import check_all, days_between, load, match_transfers

SEED, SCALE = 7, 0.3
COLD = {"INSG100", "EPO4KS", "TRZ150V"}
CHEAP = {"PCM500T", "PCM120S", "IBU400T", "AMX500C", "MET500T", "OME20C", "SYR5", "CAN20G", "GLV75", "GAU10",
         "NS500B"}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    out = {}
    for profile in ("plain", "standard", "shifted"):
        folder = tmp_path_factory.mktemp(profile)
        out[profile] = (folder, generate(folder, seed=SEED, scale=SCALE, profile=profile))
    return out


@pytest.fixture(scope="module")
def data(sets):
    return {p: load(folder) for p, (folder, _) in sets.items()}


@pytest.fixture(scope="module")
def std(data):
    return data["standard"]


def legit(d) -> list[dict[str, str]]:
    truth = {r["entry_id"] for r in d["truth.csv"]}
    return [r for r in d["ledger.csv"] if r["entry_id"] not in truth]


def book_before_counts(ledger) -> dict[str, Decimal]:
    """Book stock just before each count row, by replaying the file."""
    bal: dict[tuple, Decimal] = defaultdict(Decimal)
    out = {}
    for r in ledger:
        key = (r["facility_code"], r["item_code"], r["lot_number"])
        q = Decimal(r["quantity"])
        if r["kind"] == "count":
            out[r["entry_id"]] = bal[key]
            bal[key] = q
        elif r["kind"] in ("receipt", "transfer_in", "adjustment"):
            bal[key] += q
        else:
            bal[key] -= q
    return out


def t(r) -> datetime:
    return datetime.fromisoformat(r["occurred_at"])


# ---------------------------------------------------------------- validity and the profiles

@pytest.mark.parametrize("profile", ["standard", "shifted"])
def test_every_profile_is_a_valid_data_set(sets, profile):
    check_all(sets[profile][0])


def test_each_seed_draws_its_own_country_and_shifted_doubles_it(sets):
    std, shifted = sets["standard"][1].behaviours, sets["shifted"][1].behaviours
    other = draw(np.random.default_rng(99), "standard").as_dict()
    assert any(other[k] != std[k] for k in RANGES)
    for name, (lo, hi, doubled) in RANGES.items():
        assert lo <= std[name] <= hi, name
        if doubled:
            assert shifted[name] == pytest.approx(min(2 * std[name], 1.0) if name.endswith("share")
                                                  else 2 * std[name]), name
        else:
            assert shifted[name] == std[name], name
    assert sets["plain"][1].behaviours == {}


def test_shifted_has_about_double_the_noise(sets, data):
    std, shifted = sets["standard"][1].behaviours, sets["shifted"][1].behaviours
    for name in ("whole_packs", "split_deliveries", "cheap_shortfalls", "postop_dispensings"):
        assert std[name] >= 20, (name, std[name])
        assert 1.4 <= shifted[name] / std[name] <= 2.8, (name, std[name], shifted[name])
    # And in the files themselves: deliveries in two trips, dispensings above their prescription.
    def two_trips(d):
        return sum(1 for _, got in match_transfers(d) if len(got) == 2)

    def above(d):
        rx = {r["prescription_id"]: r for r in d["prescriptions.csv"]}
        return sum(1 for r in legit(d) if r["kind"] == "dispense" and r["prescription_id"]
                   and Decimal(r["quantity"]) > Decimal(rx[r["prescription_id"]]["quantity"]))
    for count in (two_trips, above):
        assert 1.4 <= count(data["shifted"]) / count(data["standard"]) <= 2.8, count.__name__


def test_same_arguments_give_identical_bytes_and_profiles_differ(tmp_path, sets):
    for profile in ("standard", "shifted"):
        again = tmp_path / profile
        generate(again, seed=SEED, scale=SCALE, profile=profile)
        for name in FILES:
            assert (sets[profile][0] / name).read_bytes() == (again / name).read_bytes(), (profile, name)
    assert (sets["standard"][0] / "ledger.csv").read_bytes() != (sets["shifted"][0] / "ledger.csv").read_bytes()
    # Entry ids differ between profiles, so both sets can share one database.
    ids = {p: {r["entry_id"][:6] for r in load(sets[p][0])["ledger.csv"][:1]} for p in ("standard", "shifted")}
    assert ids["standard"] != ids["shifted"]


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        generate(tmp_path, seed=1, scale=0.02, profile="noisy")


@pytest.mark.parametrize("profile", ["standard", "shifted"])
def test_the_importer_accepts_each_profile(session, tmp_path, profile):
    folder = tmp_path / profile
    summary = generate(folder, seed=3, scale=0.1, profile=profile)
    report = import_dataset(session, folder)
    session.commit()
    assert report.entries_added == summary.ledger_rows
    assert balances.drift(session) == []
    assert chain.verify(session).ok
    again = import_dataset(session, folder)
    session.commit()
    assert again.entries_added == 0 and again.entries_already_present == summary.ledger_rows


def test_command_lines_take_the_profile(tmp_path, capsys):
    from web.cli.main import app

    summary = main([str(tmp_path / "a"), "--seed", "5", "--scale", "0.02", "--months", "2", "--profile", "shifted"])
    assert summary.profile == "shifted" and "legitimate behaviours (shifted)" in capsys.readouterr().out
    result = CliRunner().invoke(app, ["sample-data", str(tmp_path / "b"), "--scale", "0.02", "--profile", "shifted",
                                      "--end", "2026-06-30"])
    assert result.exit_code == 0, result.output
    generate(tmp_path / "c", seed=1, scale=0.02, profile="shifted", end=date(2026, 6, 30))
    assert (tmp_path / "b" / "ledger.csv").read_bytes() == (tmp_path / "c" / "ledger.csv").read_bytes()
    bad = CliRunner().invoke(app, ["sample-data", str(tmp_path / "d"), "--profile", "noisy"])
    assert bad.exit_code == 2


# ---------------------------------------------------------------- truth stays clean

def test_truth_names_no_legitimate_row(std):
    ledger = {r["entry_id"]: r for r in std["ledger.csv"]}
    for row in std["truth.csv"]:
        e = ledger[row["entry_id"]]
        assert e["reason"] not in ("recalled", "correction", "emergency"), e
        assert not e["reverses"]
    # Every incident the plain profile plants is still planted, once per incident.
    incidents = Counter(r["scenario"] for r in {r["incident_id"]: r for r in std["truth.csv"]}.values())
    assert set(incidents) == {"over_dispense", "ghost_patient", "deceased_patient", "doctor_shopping",
                              "no_prescription_controlled", "count_shortfall", "premature_writeoff",
                              "transfer_shrinkage", "off_hours_user", "consumption_spike"}


# ---------------------------------------------------------------- at the counter

def keyed_slips(d) -> dict[str, dict[str, str]]:
    """Dispensings corrected soon after by nine tenths of their quantity, or reversed whole:
    entry_id -> the correcting entry."""
    ledger = d["ledger.csv"]
    fixes = defaultdict(list)
    for r in ledger:
        if r["kind"] == "adjustment" and r["reason"] == "correction":
            fixes[(r["facility_code"], r["item_code"], r["lot_number"])].append(r)
    out = {}
    for r in ledger:
        if r["kind"] != "dispense":
            continue
        q = Decimal(r["quantity"])
        for f in fixes.get((r["facility_code"], r["item_code"], r["lot_number"]), ()):
            if f["reverses"] == r["entry_id"] or (
                    not f["reverses"] and Decimal(f["quantity"]) == q * 9 / 10
                    and 0 < days_between(r["occurred_at"], f["occurred_at"]) <= 6):
                out[r["entry_id"]] = f
                break
    return out


def test_whole_packs_above_the_prescription(std):
    rx = {r["prescription_id"]: r for r in std["prescriptions.csv"]}
    slips = keyed_slips(std)
    above = [r for r in legit(std) if r["kind"] == "dispense" and r["prescription_id"]
             and Decimal(r["quantity"]) > Decimal(rx[r["prescription_id"]]["quantity"])
             and r["entry_id"] not in slips]
    assert len(above) >= 20
    for r in above:
        assert Decimal(r["quantity"]) / Decimal(rx[r["prescription_id"]]["quantity"]) < 2, r


def test_keyed_ten_times_too_large_then_corrected(std):
    ledger = std["ledger.csv"]
    at = {r["entry_id"]: i for i, r in enumerate(ledger)}
    def same(a, b):
        return all(a[c] == b[c] for c in ("facility_code", "item_code", "lot_number", "health_card_id",
                                          "prescription_id"))
    slips = {e: f for e, f in keyed_slips(std).items() if not f["reverses"] or
             # a duplicate entry reversed whole is another mistake: here the re-entry is a tenth
             any(r["kind"] == "dispense" and same(r, ledger[at[e]])
                 and Decimal(r["quantity"]) * 10 == Decimal(ledger[at[e]]["quantity"])
                 for r in ledger[at[f["entry_id"]]:at[f["entry_id"]] + 500])}
    partial = [e for e, f in slips.items() if not f["reverses"]]
    whole = [e for e, f in slips.items() if f["reverses"]]
    assert len(partial) >= 2 and len(whole) >= 1
    truth = {r["entry_id"] for r in std["truth.csv"]}
    delays = []
    for e, f in slips.items():
        assert e not in truth and f["entry_id"] not in truth
        delays.append(days_between(ledger[at[e]]["occurred_at"], f["occurred_at"]))
    assert min(delays) < 0.2 and max(delays) > 0.5   # minutes for some, days for others


def test_partial_fills_completed_later(std):
    rx = {r["prescription_id"]: r for r in std["prescriptions.csv"]}
    parts = defaultdict(list)
    for r in legit(std):
        if r["kind"] == "dispense" and r["prescription_id"]:
            parts[r["prescription_id"]].append(r)
    completed = [p for p, rows in parts.items() if len({r["occurred_at"][:10] for r in rows}) == 2
                 and sum(Decimal(r["quantity"]) for r in rows) == Decimal(rx[p]["quantity"])]
    assert len(completed) >= 10


def chronic_collections(d) -> dict[tuple[str, str], list[tuple[date, dict, dict]]]:
    rx = {r["prescription_id"]: r for r in d["prescriptions.csv"]}
    out = defaultdict(list)
    for r in legit(d):
        if r["kind"] == "dispense" and r["prescription_id"] and int(rx[r["prescription_id"]]["days_supply"]) >= 21:
            out[(r["health_card_id"], r["item_code"])].append((t(r).date(), r, rx[r["prescription_id"]]))
    return out


def test_early_refills(data):
    def early(d):
        n = 0
        for rows in chronic_collections(d).values():
            for (d0, _, rx0), (d1, _, _) in zip(rows, rows[1:]):
                n += (d1 - d0).days <= int(rx0["days_supply"]) - 6
        return n
    assert early(data["standard"]) > early(data["plain"]) + 10


def test_postop_course_at_another_facility_overlaps_a_chronic_prescription(std):
    facilities = {f["code"]: f for f in std["facilities.csv"]}
    chronic = chronic_collections(std)
    by_card = defaultdict(list)
    for (card, _), rows in chronic.items():
        by_card[card].extend(rows)
    postop = [r for r in std["prescriptions.csv"] if r["diagnosis_code"] == "Z48.8"]
    assert postop
    overlapping = 0
    for p in postop:
        assert facilities[p["facility_code"]]["kind"] == "hospital"
        issued = date.fromisoformat(p["issued_on"])
        overlapping += any(d0 <= issued < d0 + timedelta(days=int(rx["days_supply"]))
                           and r["facility_code"] != p["facility_code"] for d0, r, rx in by_card[p["health_card_id"]])
    assert overlapping >= len(postop) // 2


def test_patients_who_move_collect_at_the_new_facility(std):
    moved = 0
    for rows in chronic_collections(std).values():
        sites = [r["facility_code"] for _, r, _ in rows]
        half = len(sites) // 2
        if len(sites) >= 4 and sites[0] == sites[1] and sites[-1] == sites[-2] and sites[0] != sites[-1] \
                and set(sites[:half]).isdisjoint(sites[-2:]):
            moved += 1
    assert moved >= 3


def test_outbreak_a_regional_surge(data):
    """Weeks in which one region dispenses far more for respiratory infections than the same
    country without the outbreak (the plain profile of the same seed), while the others do not."""
    def weekly(d):
        region = {f["code"]: f["region"] for f in d["facilities.csv"]}
        out = defaultdict(Counter)
        for r in legit(d):
            if r["kind"] == "dispense" and r["item_code"] in ("AMX500C", "AMX250S", "AZI500T", "PCM500T",
                                                              "PCM120S", "IBU400T"):
                out[region[r["facility_code"]]][t(r).isocalendar()[1]] += 1
        return out
    noisy, quiet = weekly(data["standard"]), weekly(data["plain"])
    surges = {(region, week) for region in noisy for week in noisy[region]
              if noisy[region][week] >= 1.4 * quiet[region][week] + 5}
    assert surges
    region = next(iter(surges))[0]
    assert all(r == region for r, _ in surges) or len({r for r, _ in surges}) <= 2
    assert len([w for r, w in surges if r == region]) >= 2   # weeks, not a day


def test_a_clinic_opens_mid_period(std):
    first = {}
    for r in std["ledger.csv"]:
        if r["kind"] == "dispense":
            first.setdefault(r["facility_code"], t(r))
    start = min(first.values())
    end = max(t(r) for r in std["ledger.csv"])
    late = [f for f, x in first.items() if x - start > (end - start) * 0.2]
    assert late
    facilities = {f["code"]: f for f in std["facilities.csv"]}
    assert all(facilities[f]["kind"] == "health_center" for f in late)


def test_emergency_controlled_doses_without_prescription_carry_a_reason(std):
    items = {i["code"]: i for i in std["items.csv"]}
    facilities = {f["code"]: f for f in std["facilities.csv"]}
    em = [r for r in std["ledger.csv"] if r["kind"] == "dispense" and not r["prescription_id"]
          and items[r["item_code"]]["controlled"] == "true" and r["reason"] == "emergency"]
    assert len(em) >= 5
    assert all(facilities[r["facility_code"]]["kind"] == "hospital" for r in em)
    assert any(not "08" <= r["occurred_at"][11:13] < "20" for r in em)


# ---------------------------------------------------------------- staff and opening hours

def test_opening_days_and_night_shifts(std):
    facilities = {f["code"]: f for f in std["facilities.csv"]}
    by_kind_day = defaultdict(Counter)
    hc_saturday = Counter()
    for r in legit(std):
        if r["kind"] == "dispense":
            kind = facilities[r["facility_code"]]["kind"]
            wd = t(r).weekday()
            by_kind_day[kind][wd] += 1
            if kind == "health_center" and wd == 5:
                hc_saturday[r["facility_code"]] += 1
    assert by_kind_day["health_center"][4] == 0      # Friday
    hcs = [f for f, x in facilities.items() if x["kind"] == "health_center"]
    assert len(hc_saturday) < len(hcs)                # most close on Saturday too
    assert by_kind_day["hospital"][4] > 0 and by_kind_day["hospital"][5] > 0
    nights = [r for r in legit(std) if r["kind"] == "dispense" and facilities[r["facility_code"]]["kind"] == "hospital"
              and not "08" <= r["occurred_at"][11:13] < "20"]
    night_users = Counter(r["recorded_by"] for r in nights)
    day_users = Counter(r["recorded_by"] for r in legit(std) if r["kind"] == "dispense"
                        and facilities[r["facility_code"]]["kind"] == "hospital" and "08" <= r["occurred_at"][11:13] < "20")
    assert night_users and set(night_users).isdisjoint(day_users)


def test_unequal_workloads_and_staff_who_leave_or_join(std):
    per_fac = defaultdict(Counter)
    first, last = {}, {}
    for r in std["ledger.csv"]:
        per_fac[r["facility_code"]][r["recorded_by"]] += 1
        first.setdefault(r["recorded_by"], t(r))
        last[r["recorded_by"]] = t(r)
    uneven = [f for f, c in per_fac.items() if len(c) >= 3 and max(c.values()) >= 3 * min(c.values())]
    assert uneven
    start = min(first.values())
    end = max(last.values())
    joined = {u for u, x in first.items() if x - start > (end - start) * 0.2}
    left = {u for u, x in last.items() if end - x > (end - start) * 0.15}

    def number(u: str) -> int:
        return int(u.rsplit("-", 1)[1])
    # Someone leaves, and the newcomer who takes over has the facility's newest user id.
    replaced = [f for f, c in per_fac.items() if set(c) & left and set(c) & joined
                and max(c, key=number) in joined]
    assert replaced


# ---------------------------------------------------------------- on the shelves

def test_cheap_items_counted_a_few_percent_short(std):
    book = book_before_counts(std["ledger.csv"])
    short = [r for r in legit(std) if r["kind"] == "count" and r["item_code"] in CHEAP and book[r["entry_id"]] > 0
             and 0.03 <= float(1 - Decimal(r["quantity"]) / book[r["entry_id"]]) <= 0.075]
    assert len(short) >= 10
    assert {r["item_code"] for r in short} <= CHEAP


def test_fridge_failure_written_off_as_damaged_and_resupplied(std):
    """Every cold-chain item a facility holds written off as damaged at once, and replacements
    delivered within two days."""
    lots: dict[tuple, Decimal] = defaultdict(Decimal)
    losses = defaultdict(set)
    ledger = std["ledger.csv"]
    for r in ledger:
        key = (r["facility_code"], r["item_code"], r["lot_number"])
        q = Decimal(r["quantity"])
        lots[key] = q if r["kind"] == "count" else lots[key] + (
            q if r["kind"] in ("receipt", "transfer_in", "adjustment") else -q)
        if r["kind"] == "loss" and r["reason"] == "damaged" and r["item_code"] in COLD:
            losses[(r["facility_code"], r["occurred_at"])].add(key)
    # Replay again, looking at the cold shelves right after each group of damaged cold-chain losses.
    lots.clear()
    failures = []
    for i, r in enumerate(ledger):
        key = (r["facility_code"], r["item_code"], r["lot_number"])
        q = Decimal(r["quantity"])
        lots[key] = q if r["kind"] == "count" else lots[key] + (
            q if r["kind"] in ("receipt", "transfer_in", "adjustment") else -q)
        group = (r["facility_code"], r["occurred_at"])
        last_of_group = i + 1 == len(ledger) or (ledger[i + 1]["facility_code"], ledger[i + 1]["occurred_at"]) != group
        if group in losses and last_of_group and len(losses[group]) >= 2:
            if all(v == 0 for k, v in lots.items() if k[0] == r["facility_code"] and k[1] in COLD):
                failures.append(group)
    assert failures
    fac, when = failures[0]
    resupply = [r for r in std["ledger.csv"] if r["kind"] == "transfer_in" and r["facility_code"] == fac
                and r["item_code"] in COLD and 0 < days_between(when, r["occurred_at"]) <= 2]
    assert resupply


def test_a_recalled_lot_written_off_at_most_sites_in_the_same_weeks(std):
    recalled = [r for r in std["ledger.csv"] if r["kind"] == "loss" and r["reason"] == "recalled"]
    lots = Counter((r["item_code"], r["lot_number"]) for r in recalled)
    (item, lot), n = lots.most_common(1)[0]
    rows = [r for r in recalled if (r["item_code"], r["lot_number"]) == (item, lot)]
    assert len({r["facility_code"] for r in rows}) >= 3
    assert days_between(min(r["occurred_at"] for r in rows), max(r["occurred_at"] for r in rows)) <= 31


def test_short_picks_corrected_at_the_store(std):
    facilities = {f["code"]: f for f in std["facilities.csv"]}
    fixes = [r for r in legit(std) if r["kind"] == "adjustment" and r["reason"] == "correction"
             and facilities[r["facility_code"]]["kind"] == "warehouse"]
    assert fixes
    matched = 0
    for o, got in match_transfers(std):
        sent, arrived = Decimal(o["quantity"]), sum(Decimal(r["quantity"]) for r in got)
        if got and arrived < sent:
            matched += any(f["facility_code"] == o["facility_code"] and f["lot_number"] == o["lot_number"]
                           and Decimal(f["quantity"]) == sent - arrived and f["occurred_at"] > got[0]["occurred_at"]
                           for f in fixes)
    assert matched >= 1


def test_deliveries_in_two_trips_damaged_on_arrival_and_in_transit_at_the_end(std):
    pairs = match_transfers(std)
    two_trips = [(o, got) for o, got in pairs if len(got) == 2]
    assert len(two_trips) >= 5
    for o, got in two_trips:
        assert sum(Decimal(r["quantity"]) for r in got) == Decimal(o["quantity"])
    last = max(r["occurred_at"] for r in std["ledger.csv"])
    on_the_road = [o for o, got in pairs if not got]
    truth = {r["entry_id"] for r in std["truth.csv"]}
    assert [o for o in on_the_road if o["entry_id"] not in truth and days_between(o["occurred_at"], last) < 8]
    ins = {(r["facility_code"], r["lot_number"], r["occurred_at"]) for r in std["ledger.csv"] if r["kind"] == "transfer_in"}
    assert any(r["kind"] == "loss" and r["reason"] == "damaged" and (r["facility_code"], r["lot_number"], r["occurred_at"]) in ins
               for r in std["ledger.csv"])


def test_month_end_expiry_write_offs_and_surplus_to_a_neighbour(std):
    facilities = {f["code"]: f for f in std["facilities.csv"]}
    month_end = [r for r in std["ledger.csv"] if r["kind"] == "loss" and r["reason"] == "expired"
                 and r["occurred_at"][11:16] == "21:30"]
    counts = {(r["facility_code"], r["occurred_at"]) for r in std["ledger.csv"] if r["kind"] == "count"}
    assert month_end and all((r["facility_code"], r["occurred_at"]) in counts for r in month_end)
    expiry = {(r["item_code"], r["lot_number"]): r["expiry_date"] for r in std["ledger.csv"] if r["expiry_date"]}
    left = [(date.fromisoformat(expiry[(r["item_code"], r["lot_number"])]) - t(r).date()).days for r in month_end]
    assert all(0 < d <= 125 for d in left)    # short-dated, not months ahead
    lateral = [r for r in std["ledger.csv"] if r["kind"] == "transfer_out"
               and facilities[r["facility_code"]]["kind"] != "warehouse"
               and facilities[r["counterparty_code"]]["kind"] != "warehouse"]
    assert lateral
    assert all(facilities[r["facility_code"]]["region"] == facilities[r["counterparty_code"]]["region"] for r in lateral)


# ---------------------------------------------------------------- optional columns

def test_optional_columns_are_left_empty_in_part_of_the_data(std, data):
    ledger = std["ledger.csv"]
    transfers = [r for r in ledger if r["kind"] in ("transfer_out", "transfer_in")]
    assert any(not r["document_number"] for r in transfers) and any(r["document_number"] for r in transfers)
    assert any(not r["recorded_at"] for r in ledger) and any(r["recorded_at"] for r in ledger)
    late = [r for r in ledger if r["recorded_at"] and days_between(r["occurred_at"], r["recorded_at"]) > 1 / 24]
    assert late
    assert "recorded_at" not in data["plain"]["ledger.csv"][0]
