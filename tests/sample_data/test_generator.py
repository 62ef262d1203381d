"""The generated data set honours the data contract and its ground truth points at real entries.

These tests read the CSV files back as text, the way an importer does, and check the rules a strict
importer enforces (columns, domains, references, never below zero, expiry on new lots) with plain
Python, independently of how the generator reasons about them. The checks hold for every profile
(tests/sample_data/test_legitimate.py reuses them); the legitimate behaviours themselves are
tested there.
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_data.generator import FILES, GenerationSummary, generate, main
from sample_data.scenarios import SCENARIOS
from sample_data import SMALL

CONTRACT = {
    "facilities.csv": ["code", "name", "region", "kind", "parent_code"],
    "items.csv": ["code", "name", "atc_code", "form", "unit", "controlled", "max_dispense_quantity"],
    "patients.csv": ["health_card_id", "birth_year", "sex", "home_facility_code", "deceased_on"],
    "prescriptions.csv": ["prescription_id", "health_card_id", "facility_code", "prescriber", "item_code",
                          "quantity", "days_supply", "issued_on", "diagnosis_code"],
    "ledger.csv": ["entry_id", "occurred_at", "facility_code", "kind", "item_code", "lot_number", "expiry_date",
                   "quantity", "health_card_id", "prescription_id", "counterparty_code", "reason", "recorded_by",
                   "document_number", "reverses"],
    "truth.csv": ["incident_id", "scenario", "entry_id", "facility_code", "description"],
}
REQUIRED = {
    "facilities.csv": ["code", "name", "region", "kind"],
    "items.csv": ["code", "name", "unit", "controlled"],
    "patients.csv": ["health_card_id"],
    "prescriptions.csv": ["prescription_id", "health_card_id", "facility_code", "prescriber", "item_code",
                          "quantity", "days_supply", "issued_on"],
    "ledger.csv": ["entry_id", "occurred_at", "facility_code", "kind", "item_code", "quantity", "recorded_by"],
    "truth.csv": ["incident_id", "scenario", "entry_id", "facility_code", "description"],
}
OPTIONAL_LEDGER = ["recorded_at"]
"""Written by the profiles with legitimate noise (filled at part of the facilities only)."""
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+02:00$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
QUANTITY = re.compile(r"^-?\d+(\.\d)?$")
ADDS = {"receipt", "transfer_in"}
SUBTRACTS = {"dispense", "transfer_out", "loss"}


def read(folder: Path, name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (folder / name).open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def load(folder: Path) -> dict[str, list[dict[str, str]]]:
    return {name: read(folder, name)[1] for name in FILES}


# ---------------------------------------------------------------- checks, reused across data sets

def check_columns_and_required_values(folder: Path, data) -> None:
    for name, columns in CONTRACT.items():
        header, _ = read(folder, name)
        assert header in (columns, columns + (OPTIONAL_LEDGER if name == "ledger.csv" else [])), name
    for name, columns in REQUIRED.items():
        for i, row in enumerate(data[name]):
            for c in columns:
                assert row[c] != "", f"{name}:{i + 2}: {c} is empty"


def check_master_data(data) -> None:
    facilities = {f["code"]: f for f in data["facilities.csv"]}
    assert len(facilities) == len(data["facilities.csv"])
    assert {f["kind"] for f in facilities.values()} == {"warehouse", "hospital", "health_center", "pharmacy"}
    central = [f for f in facilities.values() if f["kind"] == "warehouse" and f["parent_code"] == ""]
    assert len(central) == 1
    for f in facilities.values():
        if f["parent_code"]:
            parent = facilities[f["parent_code"]]
            assert parent["kind"] == "warehouse"
            if f["kind"] == "warehouse":
                assert parent is central[0]
            else:
                assert parent["parent_code"] == central[0]["code"]
                assert parent["region"] == f["region"]
    items = {i["code"]: i for i in data["items.csv"]}
    assert 25 <= len(items) <= 40
    for it in items.values():
        assert it["controlled"] in ("true", "false")
        assert it["unit"] in ("tablet", "capsule", "vial", "ml", "piece", "inhaler")
        assert it["atc_code"] == "" or re.fullmatch(r"[A-Z]\d\d[A-Z]{2}\d\d", it["atc_code"])
        assert it["max_dispense_quantity"] == "" or QUANTITY.match(it["max_dispense_quantity"])
    assert items["CYC500V"]["atc_code"] == "L01AA01" and items["CYC500V"]["controlled"] == "true"
    card_list = [p["health_card_id"] for p in data["patients.csv"]]
    cards = set(card_list)
    assert len(cards) == len(card_list)
    for p in data["patients.csv"]:
        assert re.fullmatch(r"LY\d{10}", p["health_card_id"])
        assert p["sex"] in ("F", "M", "U")
        assert p["home_facility_code"] in facilities
        assert p["deceased_on"] == "" or DATE.match(p["deceased_on"])
        assert 1925 <= int(p["birth_year"]) <= 2035
    ids = [r["prescription_id"] for r in data["prescriptions.csv"]]
    assert len(set(ids)) == len(ids)
    for r in data["prescriptions.csv"]:
        assert facilities[r["facility_code"]]["kind"] in ("hospital", "health_center")
        assert r["item_code"] in items
        assert QUANTITY.match(r["quantity"]) and Decimal(r["quantity"]) > 0
        assert int(r["days_supply"]) > 0
        assert DATE.match(r["issued_on"])
        assert r["health_card_id"] in cards


def check_ledger_rows(data) -> None:
    facilities = {f["code"]: f for f in data["facilities.csv"]}
    items = {i["code"]: i for i in data["items.csv"]}
    prescriptions = {r["prescription_id"]: r for r in data["prescriptions.csv"]}
    ledger = data["ledger.csv"]
    ids = [r["entry_id"] for r in ledger]
    assert len(set(ids)) == len(ids)
    seen = set()
    for r in ledger:
        assert TIMESTAMP.match(r["occurred_at"]), r["occurred_at"]
        assert r["facility_code"] in facilities
        assert r["item_code"] in items
        assert QUANTITY.match(r["quantity"]), r["quantity"]
        q = Decimal(r["quantity"])
        if items[r["item_code"]]["unit"] != "ml":
            assert q == q.to_integral_value(), r
        if r["kind"] == "adjustment":
            assert q != 0 and r["reason"]
        elif r["kind"] == "count":
            assert q >= 0
        else:
            assert r["kind"] in ADDS | SUBTRACTS and q > 0
        if r["kind"] == "dispense":
            assert r["health_card_id"]
            assert facilities[r["facility_code"]]["kind"] != "warehouse"
            if r["prescription_id"]:
                rx = prescriptions[r["prescription_id"]]
                assert rx["health_card_id"] == r["health_card_id"] and rx["item_code"] == r["item_code"]
            assert r["reason"] in ("", "emergency")
        else:
            assert r["health_card_id"] == "" and r["prescription_id"] == ""
        if r["kind"] in ("transfer_out", "transfer_in"):
            assert r["counterparty_code"] in facilities and r["counterparty_code"] != r["facility_code"]
        elif r["kind"] == "receipt":
            assert r["counterparty_code"] and r["counterparty_code"] not in facilities
            assert facilities[r["facility_code"]]["parent_code"] == ""
        else:
            assert r["counterparty_code"] == ""
        if r["kind"] == "loss":
            assert r["reason"] in ("expired", "damaged", "theft", "lost", "recalled")
        if r["reverses"]:
            assert r["reverses"] in seen and r["kind"] == "adjustment" and r["reason"] == "correction"
        assert r["recorded_by"].startswith("u-" + r["facility_code"] + "-")
        assert r["expiry_date"] == "" or DATE.match(r["expiry_date"])
        if r.get("recorded_at"):
            assert TIMESTAMP.match(r["recorded_at"]) and r["recorded_at"] >= r["occurred_at"], r
        seen.add(r["entry_id"])
    # A facility's recording times never run backwards: recording order is application order.
    last: dict[str, str] = {}
    for r in ledger:
        if r.get("recorded_at"):
            assert r["recorded_at"] >= last.get(r["facility_code"], ""), r
            last[r["facility_code"]] = r["recorded_at"]


def check_replay(ledger: list[dict[str, str]]) -> None:
    """Apply the rows in occurred_at order (ties in file order) with a plain balance per lot."""
    order = sorted(range(len(ledger)), key=lambda i: ledger[i]["occurred_at"])
    assert order == list(range(len(ledger))), "ledger.csv is sorted by occurred_at"
    balance: dict[tuple[str, str, str], Decimal] = {}
    expiry: dict[tuple[str, str], str] = {}
    for i in order:
        r = ledger[i]
        key = (r["facility_code"], r["item_code"], r["lot_number"])
        lot = (r["item_code"], r["lot_number"])
        q = Decimal(r["quantity"])
        if lot not in expiry:
            assert r["kind"] in ADDS, f"line {i + 2}: {r['kind']} of a lot that never arrived"
            assert r["lot_number"] == "" or r["expiry_date"], f"line {i + 2}: new lot without expiry"
            expiry[lot] = r["expiry_date"]
        elif r["expiry_date"]:
            assert r["expiry_date"] == expiry[lot], f"line {i + 2}: lot changes expiry"
        if r["kind"] not in ADDS:
            assert key in balance, f"line {i + 2}: {r['kind']} at a facility that never held the lot"
        if r["kind"] == "dispense" and expiry[lot]:
            assert r["occurred_at"][:10] < expiry[lot], f"line {i + 2}: dispensed from an expired lot"
        on_hand = balance.get(key, Decimal(0))
        if r["kind"] in ADDS or r["kind"] == "adjustment":
            on_hand += q
        elif r["kind"] in SUBTRACTS:
            on_hand -= q
        else:
            on_hand = q
        assert on_hand >= 0, f"line {i + 2}: {key} goes to {on_hand}"
        balance[key] = on_hand


def days_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 86_400


def match_transfers(data) -> list[tuple[dict[str, str], list[dict[str, str]]]]:
    """Each transfer_out with the transfer_in rows that carry it, in time order.

    The legs are matched by sender, receiver, item and lot, and by waybill where both legs carry
    one (the receiving facility may write none); a delivery may arrive in two trips.
    """
    ins: dict[tuple, list[dict[str, str]]] = {}
    for r in data["ledger.csv"]:
        if r["kind"] == "transfer_in":
            ins.setdefault((r["counterparty_code"], r["facility_code"], r["item_code"], r["lot_number"]), []).append(r)
    used: set[str] = set()
    out = []
    for o in (r for r in data["ledger.csv"] if r["kind"] == "transfer_out"):
        got, total = [], Decimal(0)
        for r in ins.get((o["facility_code"], o["counterparty_code"], o["item_code"], o["lot_number"]), ()):
            if r["entry_id"] in used or r["occurred_at"] < o["occurred_at"] or days_between(o["occurred_at"], r["occurred_at"]) > 10:
                continue
            if o["document_number"] and r["document_number"] and o["document_number"] != r["document_number"]:
                continue
            if total + Decimal(r["quantity"]) > Decimal(o["quantity"]):
                continue
            got.append(r)
            used.add(r["entry_id"])
            total += Decimal(r["quantity"])
            if total == Decimal(o["quantity"]):
                break
        out.append((o, got))
    unmatched = [r["entry_id"] for rows in ins.values() for r in rows if r["entry_id"] not in used]
    assert not unmatched, f"transfer_in rows with no transfer_out: {unmatched[:5]}"
    return out


def check_transfers(data) -> None:
    """Every transfer_out arrives in full, in one trip or two, unless truth.csv names it as shrinkage,
    the sending store found it picked short and booked the difference back, or it was still on the
    road when the data ends."""
    shrinkage = {r["entry_id"] for r in data["truth.csv"] if r["scenario"] == "transfer_shrinkage"}
    ledger = data["ledger.csv"]
    last = max(r["occurred_at"] for r in ledger)
    corrections: dict[tuple, list[Decimal]] = {}
    for r in ledger:
        if r["kind"] == "adjustment" and r["reason"] == "correction" and not r["reverses"]:
            corrections.setdefault((r["facility_code"], r["item_code"], r["lot_number"]), []).append(Decimal(r["quantity"]))
    for o, got in match_transfers(data):
        sent = Decimal(o["quantity"])
        arrived = sum((Decimal(r["quantity"]) for r in got), Decimal(0))
        if o["entry_id"] in shrinkage:
            assert arrived < sent
            continue
        if got:
            assert 0 < days_between(o["occurred_at"], got[0]["occurred_at"]) <= 6, (o, got)
            assert len(got) <= 2
        if arrived == sent:
            continue
        if got and sent - arrived in corrections.get((o["facility_code"], o["item_code"], o["lot_number"]), ()):
            continue
        assert days_between(o["occurred_at"], last) < 8, f"{o} never arrived in full ({arrived} of {sent})"


def check_truth(data) -> None:
    """Each truth entry exists and shows what its scenario says."""
    ledger = {r["entry_id"]: r for r in data["ledger.csv"]}
    patients = {p["health_card_id"]: p for p in data["patients.csv"]}
    items = {i["code"]: i for i in data["items.csv"]}
    facilities = {f["code"]: f for f in data["facilities.csv"]}
    prescriptions = {r["prescription_id"]: r for r in data["prescriptions.csv"]}
    over: dict[str, list[dict[str, str]]] = {}
    pairs = [(r["incident_id"], r["entry_id"]) for r in data["truth.csv"]]
    assert len(set(pairs)) == len(pairs)
    for t in data["truth.csv"]:
        assert t["scenario"] in SCENARIOS
        e = ledger[t["entry_id"]]
        assert e["facility_code"] == t["facility_code"]
        s = t["scenario"]
        if s in ("over_dispense", "ghost_patient", "deceased_patient", "doctor_shopping",
                 "no_prescription_controlled", "off_hours_user", "consumption_spike"):
            assert e["kind"] == "dispense"
        if s == "ghost_patient":
            assert e["health_card_id"] not in patients
        if s == "deceased_patient":
            died = patients[e["health_card_id"]]["deceased_on"]
            assert died and e["occurred_at"][:10] > died
        if s == "no_prescription_controlled":
            assert e["prescription_id"] == "" and items[e["item_code"]]["controlled"] == "true"
        if s == "off_hours_user":
            assert "01:00:00" <= e["occurred_at"][11:19] < "04:00:00"
            assert facilities[e["facility_code"]]["kind"] != "hospital"
            assert items[e["item_code"]]["controlled"] == "true"
        if s == "over_dispense":
            over.setdefault(t["incident_id"], []).append(e)
        if s == "doctor_shopping":
            assert e["prescription_id"] and items[e["item_code"]]["controlled"] == "true"
        if s == "count_shortfall":
            assert e["kind"] == "count"
        if s == "premature_writeoff":
            assert e["kind"] == "loss" and e["reason"] in ("expired", "damaged")
        if s == "transfer_shrinkage":
            assert e["kind"] in ("transfer_out", "transfer_in")
    for entries in over.values():
        # One dispensing, possibly drawn from two lots, against one prescription.
        assert len({e["prescription_id"] for e in entries}) == 1
        prescribed = Decimal(prescriptions[entries[0]["prescription_id"]]["quantity"])
        assert prescribed * 2 <= sum(Decimal(e["quantity"]) for e in entries) <= prescribed * 4


def check_no_unlabelled_policy_breaks(data) -> None:
    """Outside truth.csv, nothing dispenses to unknown or dead patients, hands out a controlled item
    without a prescription, or works a non-hospital counter between 01:00 and 04:00."""
    truth = {r["entry_id"] for r in data["truth.csv"]}
    patients = {p["health_card_id"]: p for p in data["patients.csv"]}
    items = {i["code"]: i for i in data["items.csv"]}
    facilities = {f["code"]: f for f in data["facilities.csv"]}
    for r in data["ledger.csv"]:
        if r["kind"] != "dispense" or r["entry_id"] in truth:
            continue
        p = patients.get(r["health_card_id"])
        assert p is not None, r
        assert not p["deceased_on"] or r["occurred_at"][:10] < p["deceased_on"], r
        emergency = r["reason"] == "emergency" and facilities[r["facility_code"]]["kind"] == "hospital"
        assert r["prescription_id"] or items[r["item_code"]]["controlled"] == "false" or emergency, r
        if facilities[r["facility_code"]]["kind"] != "hospital":
            assert not "01" <= r["occurred_at"][11:13] < "04", r


def check_all(folder: Path) -> dict[str, list[dict[str, str]]]:
    data = load(folder)
    check_columns_and_required_values(folder, data)
    check_master_data(data)
    check_ledger_rows(data)
    check_replay(data["ledger.csv"])
    check_transfers(data)
    check_truth(data)
    check_no_unlabelled_policy_breaks(data)
    return data


# ---------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("small")
    return out, generate(out, seed=1, scale=0.05)


@pytest.fixture(scope="module")
def data(small) -> dict[str, list[dict[str, str]]]:
    return load(small[0])


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, small):
    folder, _ = small
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate(again, seed=1, scale=0.05)
    generate(other, seed=2, scale=0.05)
    for name in FILES:
        assert (folder / name).read_bytes() == (again / name).read_bytes(), name
    assert (folder / "ledger.csv").read_bytes() != (other / "ledger.csv").read_bytes()
    assert (folder / "patients.csv").read_bytes() != (other / "patients.csv").read_bytes()


def test_every_file_has_exactly_the_contract_columns_and_required_values(small, data):
    check_columns_and_required_values(small[0], data)


def test_summary_counts_match_the_files(small, data):
    _, summary = small
    for name in FILES:
        assert summary.rows[name] == len(data[name]), name
    assert summary.ledger_rows == len(data["ledger.csv"])
    assert sum(summary.incidents.values()) == len({r["incident_id"] for r in data["truth.csv"]})
    assert 2_000 <= summary.ledger_rows <= 15_000


def test_master_data_is_in_domain_and_codes_resolve(data):
    check_master_data(data)


def test_ledger_rows_are_in_domain_and_references_resolve(data):
    check_ledger_rows(data)
    kinds = {r["kind"] for r in data["ledger.csv"]}
    assert kinds == {"receipt", "dispense", "transfer_out", "transfer_in", "adjustment", "loss", "count"}


def test_replaying_the_ledger_never_goes_below_zero_and_new_lots_carry_expiry(data):
    check_replay(data["ledger.csv"])


def test_transfers_pair_up_except_where_truth_says_otherwise(data):
    check_transfers(data)


def test_truth_covers_every_scenario_with_real_entries(small, data):
    _, summary = small
    assert {r["scenario"] for r in data["truth.csv"]} == set(SCENARIOS)
    assert all(summary.incidents[s] >= 1 for s in SCENARIOS)
    check_truth(data)


def test_policy_breaks_outside_truth_do_not_exist(data):
    check_no_unlabelled_policy_breaks(data)


def test_legitimate_look_alikes_are_present(data):
    ledger = data["ledger.csv"]
    facilities = {f["code"]: f for f in data["facilities.csv"]}
    truth = {r["entry_id"] for r in data["truth.csv"]}
    night_at_hospitals = [r for r in ledger if r["kind"] == "dispense" and r["entry_id"] not in truth
                          and facilities[r["facility_code"]]["kind"] == "hospital"
                          and not "06" <= r["occurred_at"][11:13] < "20"]
    assert night_at_hospitals
    assert any(r["reverses"] for r in ledger)
    assert any(r["kind"] == "loss" and r["reason"] == "expired" for r in ledger)
    assert any(r["kind"] == "loss" and r["reason"] == "damaged" and r["entry_id"] not in truth for r in ledger)
    per_rx: dict[str, int] = {}
    for r in ledger:
        if r["kind"] == "dispense" and r["prescription_id"]:
            per_rx[r["prescription_id"]] = per_rx.get(r["prescription_id"], 0) + 1
    assert any(n >= 2 for n in per_rx.values()), "partial fills"
    assert any("." in r["quantity"] for r in ledger if r["kind"] == "dispense"), "decimal quantities in ml"
    counts = [r for r in ledger if r["kind"] == "count" and r["entry_id"] not in truth]
    assert counts


def test_row_count_grows_roughly_linearly_with_scale(tmp_path):
    small = generate(tmp_path / "a", seed=3, scale=0.1).ledger_rows
    large = generate(tmp_path / "b", seed=3, scale=0.4).ledger_rows
    assert 2.5 <= large / small <= 5.5, (small, large)


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 10_000), months=st.integers(1, 9),
       start=st.dates(date(2024, 1, 1), date(2030, 12, 31)), scale=st.sampled_from([0.02, 0.05]))
def test_any_period_and_seed_gives_a_valid_data_set(tmp_path_factory, seed, months, start, scale):
    out = tmp_path_factory.mktemp("any")
    generate(out, seed=seed, scale=scale, start=start, months=months)
    check_all(out)


def test_command_line_writes_a_data_set(tmp_path, capsys):
    summary = main([str(tmp_path), "--seed", "5", "--scale", "0.02", "--months", "2"])
    assert summary.ledger_rows == len(load(tmp_path)["ledger.csv"])
    assert "ledger.csv" in capsys.readouterr().out


def test_committed_small_set_is_the_generators_output_and_valid(tmp_path):
    """sample_data/small is the plain profile's output (many tests rely on its exact content)."""
    committed = SMALL
    if not (committed / "ledger.csv").exists():
        pytest.skip("sample_data/small has not been generated")
    generate(tmp_path, seed=1, scale=0.05, profile="plain")
    for name in FILES:
        assert (committed / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert sum(p.stat().st_size for p in committed.glob("*.csv")) < 1_500_000
