"""The JSON API fuzzed with schemathesis against its own OpenAPI description: no answer is a 5xx,
and every answer is one the description promises (status code, content type, body schema,
headers), including the refusal of requests without credentials and of malformed ones.

The app runs for real (uvicorn on loopback, see conftest.Served) over a real database holding the
small sample data set imported and scanned: facilities, items, lots with stock, patients,
prescriptions and flags. Each operation is fuzzed as an administrator (national) and as a
pharmacist of one facility, each through a personal API token. Generated requests mix three
sources: schemathesis' valid data, its invalid data (negative mode), and requests built from what
the database holds (real facility and item codes, lots with stock, flag ids, health cards, entry
batches and FHIR bundles), so that fuzzing reaches past the "unknown facility" answers into the
ledger's write path, the workflow and the exports.

Bounded for CI: Hypothesis is derandomized (same examples on every run), keeps no example
database, and runs MAX_EXAMPLES examples per operation and role (fewer on PostgreSQL).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

import migrations
from anomaly import scan
from anomaly.models import Flag
from anomaly.workflow import ACTIONS
from stock.db import make_engine, session_factory
from stock.importer import import_dataset
from stock.models import Balance, Facility, Item, LedgerEntry, Lot, Patient, Prescription
from stock.pseudonyms import patient_key, pseudonym
from tests.web.conftest import PASSWORD, Served, make_settings
from web import auth
from web.interop import fhir
from sample_data import SMALL

MAX_EXAMPLES = int(os.environ.get("DAWA_FUZZ_EXAMPLES", "30"))
PG_EXAMPLES = max(MAX_EXAMPLES // 5, 5)

ROLES = {
    # role under test: (username, role, facility, region)
    "admin": ("fuzz_admin", "admin", None, None),
    "pharmacist": ("fuzz_pharm", "pharmacist", "TRP-H01", None),
}
OTHER_USERS = {"fuzz_auditor": ("auditor", None, None)}  # someone to assign flags to

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,  # without the token (or with a wrong one) the same request must be refused
    negative_data_rejection,  # what the description calls invalid must be refused with a 4xx
    # Not positive_data_acceptance: a request the schema calls valid may still name a facility
    # that does not exist, a lot without stock or a flag in a state that forbids the action, and
    # the API rightly refuses those (404, 409). The checks above hold those answers to the
    # description instead.
]


def _operations() -> list[str]:
    """Labels ("GET /api/v1/me") of the API's operations, from the app's description, at
    collection time so that each gets a test of its own. test_served_schema_lists_the_same
    holds them equal to what the running app serves."""
    from web.app import create_app

    app = create_app(make_engine("sqlite://"), make_settings())
    return [f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items() for method in ops]


OPERATIONS = _operations()


@dataclass
class FuzzWorld:
    base_url: str
    tokens: dict[str, str]
    facilities: list[str]
    regions: list[str]
    items: list[str]
    stock: list[tuple[str, str, str]]  # (facility, item, lot) with stock on hand
    health_cards: list[str]
    pseudonyms: list[str]
    prescriptions: list[str]
    flag_ids: list[str]
    detectors: list[str]
    entry_ids: list[str]
    served: Served | None = None
    engine: object = None
    schema: object = None
    extra: dict = field(default_factory=dict)


def build_world(engine) -> FuzzWorld:
    """Import the small sample, add the users, scan, issue the tokens, serve the app."""
    from web.app import create_app
    from web.admin.service import create_user

    settings = make_settings()
    Session = session_factory(engine)
    tokens = {}
    with Session() as s:
        import_dataset(s, SMALL)
        for name, (role, facility, region) in OTHER_USERS.items():
            create_user(s, name, role, PASSWORD, facility=facility, region=region, web=settings.web)
        for key, (name, role, facility, region) in ROLES.items():
            user = create_user(s, name, role, PASSWORD, facility=facility, region=region, web=settings.web)
            tokens[key], _ = auth.issue_api_token(s, user, "fuzzing")
        s.commit()
        scan.run(s)
        s.commit()
        stock = s.execute(select(Facility.code, Item.code, Lot.lot_number)
                          .join(Balance, Balance.facility_id == Facility.id)
                          .join(Item, Item.id == Balance.item_id).join(Lot, Lot.id == Balance.lot_id)
                          .where(Balance.on_hand > 0).order_by(Facility.code, Item.code, Lot.lot_number)).all()
        world = FuzzWorld(
            base_url="", tokens=tokens,
            facilities=list(s.scalars(select(Facility.code).order_by(Facility.code))),
            regions=sorted(set(s.scalars(select(Facility.region)))),
            items=list(s.scalars(select(Item.code).order_by(Item.code))),
            stock=[tuple(r) for r in stock],
            health_cards=list(s.scalars(select(Patient.health_card_id).order_by(Patient.id).limit(40))),
            pseudonyms=[pseudonym(c, patient_key(settings))
                        for c in s.scalars(select(Patient.health_card_id).order_by(Patient.id).limit(40))],
            prescriptions=list(s.scalars(select(Prescription.code).order_by(Prescription.id).limit(40))),
            flag_ids=list(s.scalars(select(Flag.flag_id).order_by(Flag.rank_score.desc()).limit(40))),
            detectors=sorted({d for ds in s.scalars(select(Flag.detectors)) for d in ds.split(",")}),
            entry_ids=list(s.scalars(select(LedgerEntry.entry_id).order_by(LedgerEntry.id).limit(40))),
        )
        # A few dispenses of the pharmacist's facility and of another one, as FHIR exports them.
        for code in ("TRP-H01", "BEN-H01"):
            exported = fhir.export_bundle(s, settings=settings, facility_code=code, kinds=["dispense"],
                                          patient_ids="card").bundle
            dispenses = [e for e in exported["entry"] if e["resource"]["resourceType"] == "MedicationDispense"]
            world.extra.setdefault("fhir", {})[code] = {**exported, "entry": dispenses[:2]}
    assert world.stock and world.flag_ids and world.health_cards, "the sample should give stock and flags"
    world.served = Served(create_app(engine, settings))
    world.base_url = world.served.base_url
    world.engine = engine
    # The description the running app serves, not one built beside it.
    world.schema = schemathesis.openapi.from_url(f"{world.base_url}/api/openapi.json")
    return world


# --- requests built from what the database holds ------------------------------------------------

def _entry_batches(w: FuzzWorld, role: str) -> st.SearchStrategy[dict]:
    own = [x for x in w.stock if x[0] == "TRP-H01"] or w.stock
    now = datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))

    @st.composite
    def entry(draw) -> dict:
        facility, item, lot = draw(st.sampled_from(own if draw(st.integers(0, 4)) else w.stock))
        kind = draw(st.sampled_from(["dispense", "dispense", "dispense", "receipt", "loss", "adjustment",
                                     "count", "transfer_out"]))
        quantity = draw(st.integers(-5, 5)) if kind == "adjustment" else draw(st.integers(0, 200))
        body = {"entry_id": f"fz-{draw(st.integers(0, 60))}", "facility_code": facility, "kind": kind,
                "item_code": item, "lot_number": lot, "quantity": quantity,
                "occurred_at": (now - timedelta(minutes=draw(st.integers(0, 60 * 24 * 90)))).isoformat()}
        if kind == "dispense":
            body["health_card_id"] = draw(st.sampled_from(w.health_cards + ["HC-NOT-REGISTERED"]))
            if draw(st.booleans()):
                body["prescription_id"] = draw(st.sampled_from(w.prescriptions))
        if kind in ("loss", "adjustment") and draw(st.booleans()):
            body["reason"] = draw(st.sampled_from(["damaged", "expired", "count correction"]))
        if kind == "receipt":
            body["expiry_date"] = "2028-01-31"
            body["counterparty_code"] = "MEDIPHARM SUPPLY"
        if kind == "transfer_out":
            body["counterparty_code"] = draw(st.sampled_from(w.facilities))
        if draw(st.integers(0, 9)) == 0:
            body["reverses"] = draw(st.sampled_from(w.entry_ids))
        if draw(st.integers(0, 9)) == 0:
            body["recorded_by"] = draw(st.sampled_from([ROLES[role][0], "someone_else"]))
        return body

    return st.lists(entry(), min_size=1, max_size=4).map(lambda es: {"entries": es})


def _fhir_bundles(w: FuzzWorld) -> st.SearchStrategy[dict]:
    """Bundles of dispenses exported from the database itself: sent as they are (all recorded
    already), under new ids (new dispensing), or with a changed quantity (a conflict)."""
    import json

    @st.composite
    def bundle(draw) -> dict:
        facility = draw(st.sampled_from(sorted(w.extra["fhir"])))
        original = w.extra["fhir"][facility]
        text = json.dumps(original)
        if draw(st.booleans()):  # new entry ids: records new dispensing
            suffix = f"-fz{draw(st.integers(0, 20))}"
            for entry in original["entry"]:
                res = entry["resource"]
                ids = [res.get("id")] + [i["value"] for i in res.get("identifier", [])
                                         if i.get("system") == "urn:dawa:entry"]
                for old in filter(None, ids):
                    text = text.replace(f'"{old}"', f'"{old}{suffix}"')
        out = json.loads(text)
        if draw(st.integers(0, 3)) == 0:
            for entry in out["entry"]:
                if entry["resource"].get("resourceType") == "MedicationDispense":
                    entry["resource"]["quantity"]["value"] = draw(st.integers(0, 500))
        return out

    return bundle()


def realistic(w: FuzzWorld, op, role: str) -> st.SearchStrategy | None:
    """Cases for ``op`` whose parameters name what exists (or nearly), so the handlers run."""
    path, method = op.path, op.method.upper()
    facilities = st.sampled_from(w.facilities)
    items = st.sampled_from(w.items)

    def with_query(**strategies):
        return st.fixed_dictionaries({k: v for k, v in strategies.items()}).flatmap(
            lambda q: op.as_strategy(query=q))

    def with_path(strategy):
        return strategy.flatmap(lambda p: op.as_strategy(path_parameters=p))

    if path == "/api/v1/stock/on-hand":
        return with_query(facility=facilities, item=items)
    if path == "/api/v1/stock/card/{facility}/{item}":
        return with_path(st.sampled_from(w.stock).map(lambda x: {"facility": x[0], "item": x[1]}))
    if path == "/api/v1/patients/{patient}/dispensings":
        return with_path(st.sampled_from(w.pseudonyms).map(lambda p: {"patient": p}))
    if path == "/api/v1/patients/dispensings":
        return st.sampled_from(w.health_cards).flatmap(lambda c: op.as_strategy(body={"health_card_id": c}))
    if path == "/api/v1/flags" and method == "GET":
        return with_query(region=st.sampled_from(w.regions), facility=facilities,
                          detector=st.sampled_from(w.detectors),
                          severity=st.sampled_from(["low", "medium", "high"]),
                          status=st.sampled_from(["open", "assigned", "confirmed", "dismissed", "escalated"]))
    if path == "/api/v1/flags/{flag_id}":
        return with_path(st.sampled_from(w.flag_ids).map(lambda f: {"flag_id": f}))
    if path == "/api/v1/flags/{flag_id}/actions":
        bodies = st.fixed_dictionaries(
            {"action": st.sampled_from(ACTIONS)},
            optional={"comment": st.sampled_from(["checked the register", "see the count of May"]),
                      "assignee": st.sampled_from(["fuzz_auditor", "fuzz_admin", "fuzz_pharm", "nobody"])})
        return st.tuples(st.sampled_from(w.flag_ids), bodies).flatmap(
            lambda fb: op.as_strategy(path_parameters={"flag_id": fb[0]}, body=fb[1]))
    if path == "/api/v1/entries":
        return _entry_batches(w, role).flatmap(lambda b: op.as_strategy(body=b))
    if path == "/api/v1/fhir/bundle" and method == "GET":
        return with_query(version=st.sampled_from(["R4", "R5", "R6"]), facility=facilities)
    if path == "/api/v1/fhir/bundle" and method == "POST":
        return _fhir_bundles(w).flatmap(lambda b: op.as_strategy(body=b, media_type="application/json"))
    if path == "/api/v1/export/{name}":
        names = st.sampled_from([f"{k}.{f}" for k in ("on-hand", "stock-card", "flags") for f in ("csv", "xlsx")])
        return st.tuples(names, facilities, items).flatmap(
            lambda t: op.as_strategy(path_parameters={"name": t[0]}, query={"facility": t[1], "item": t[2]}))
    if path == "/api/v1/audit":
        return with_query(action=st.sampled_from(["ledger_post", "patient_history_read", "login"]))
    return None


def _has_inputs(op) -> bool:
    return bool(list(op.iter_parameters())) or bool(op.body)


def fuzz(w: FuzzWorld, label: str, role: str, max_examples: int) -> None:
    op = w.schema.find_operation_by_label(label)
    assert op is not None, f"{label} is not in the served description"
    sources = [op.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if _has_inputs(op):
        sources.append(op.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    own = realistic(w, op, role)
    if own is not None:
        sources.append(own)
    headers = {"Authorization": f"Bearer {w.tokens[role]}"}

    @hypothesis.settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                         suppress_health_check=list(HealthCheck), print_blob=False)
    @hypothesis.given(case=st.one_of(sources))
    def run(case) -> None:
        response = case.call(base_url=w.base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


# --- the tests -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'dawa.sqlite'}")
    migrations.upgrade(engine)
    world = build_world(engine)
    yield world
    world.served.stop()
    engine.dispose()


def test_served_schema_lists_the_same_operations(sqlite_world):
    served = sorted(op.ok().label for op in sqlite_world.schema.get_all_operations())
    assert served == sorted(OPERATIONS)
    assert all(label.split(" ", 1)[1].startswith("/api/v1/") for label in served)


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_api(sqlite_world, label, role):
    fuzz(sqlite_world, label, role, MAX_EXAMPLES)


@pytest.mark.postgres
@pytest.mark.parametrize("role", list(ROLES))
def test_fuzz_api_on_postgres(pg_engine, role):
    """The same on PostgreSQL, every operation in one test and fewer examples per operation."""
    world = build_world(pg_engine)
    try:
        failures = []
        for label in OPERATIONS:
            try:
                fuzz(world, label, role, PG_EXAMPLES)
            except Exception as exc:  # noqa: BLE001 - collected so one run reports every operation
                failures.append(f"{label}: {exc}")
        assert not failures, "\n\n".join(failures)
    finally:
        world.served.stop()
