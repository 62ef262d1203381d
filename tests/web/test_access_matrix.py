"""The access matrix: every route x every role x own and other facility, each cell asserted.

A new route is added here as one more ``Row``; ``test_every_route_is_in_the_matrix`` fails until
it is. In each cell the role's user logs in through the real login form and calls the route on
their own facility and on one outside their scope (for a national user that one is in scope too).
Cells: ALLOW (the route's ``ok`` status), SCOPE (403: the facility is not theirs), ROLE (403: the
role may not use the route). Without a login every route is refused: 401 on the API, a redirect
to the login page elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stock.db import session_factory
from tests.web.conftest import add_users, app_routes, csrf_of, page_csrf, seed_world
from web.access import PUBLIC_PATHS

ALLOW, SCOPE, ROLE = "allow", "scope", "role"

ROLE_USERS = {
    # role: (user, own facility, a facility of another)
    "pharmacist": ("pharm_h1", "H1", "HC2"),
    "facility_manager": ("manager_h1", "H1", "HC2"),
    "auditor": ("auditor_tripoli", "H1", "B1"),
    "admin": ("admin", "H1", "B1"),  # national: the "other" facility is in scope as well
    "regional_admin": ("admin_tripoli", "H1", "B1"),  # an admin of Tripoli: B1 (Benghazi) is not theirs
}

EVERYONE = {role: (ALLOW, ALLOW) for role in ROLE_USERS}
AUDITORS = {"pharmacist": (ROLE, ROLE), "facility_manager": (ROLE, ROLE), "auditor": (ALLOW, ALLOW),
            "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, ALLOW)}
IN_SCOPE = {"pharmacist": (ALLOW, SCOPE), "facility_manager": (ALLOW, SCOPE), "auditor": (ALLOW, SCOPE),
            "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, SCOPE)}
REVIEWERS_IN_SCOPE = {"pharmacist": (ROLE, ROLE), "facility_manager": (ROLE, ROLE), "auditor": (ALLOW, SCOPE),
                      "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, SCOPE)}
ADMINS = {"pharmacist": (ROLE, ROLE), "facility_manager": (ROLE, ROLE), "auditor": (ROLE, ROLE),
          "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, ALLOW)}
NATIONAL_ADMINS = {**ADMINS, "regional_admin": (ROLE, ROLE)}  # national master data (items)
PHARMACY_STAFF = {"pharmacist": (ALLOW, SCOPE), "facility_manager": (ALLOW, SCOPE), "auditor": (ROLE, ROLE),
                  "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, SCOPE)}
PHARMACY_STAFF_ANYWHERE = {"pharmacist": (ALLOW, ALLOW), "facility_manager": (ALLOW, ALLOW),
                           "auditor": (ROLE, ROLE), "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, ALLOW)}
MANAGERS_IN_SCOPE = {"pharmacist": (ROLE, ROLE), "facility_manager": (ALLOW, SCOPE), "auditor": (ROLE, ROLE),
                     "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, SCOPE)}
MANAGERS_ANYWHERE = {"pharmacist": (ROLE, ROLE), "facility_manager": (ALLOW, ALLOW), "auditor": (ROLE, ROLE),
                     "admin": (ALLOW, ALLOW), "regional_admin": (ALLOW, ALLOW)}
PHARMACY_REVERSERS = {"pharmacist": (ALLOW, SCOPE), "facility_manager": (ALLOW, SCOPE), "auditor": (ROLE, ROLE),
                      "admin": (ROLE, ROLE), "regional_admin": (ROLE, ROLE)}


@pytest.fixture
def web_world(engine):
    """The conftest world with a regional admin added (their column of the matrix)."""
    Session = session_factory(engine)
    seed_world(Session)
    add_users(Session, {"admin_tripoli": ("admin", None, "Tripoli")})
    return engine


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as the app declares it; {facility} is filled with the cell's facility
    cells: dict[str, tuple[str, str]]
    ok: int = 200
    params: dict[str, str] = field(default_factory=dict)  # other path parameters
    query: dict[str, str] = field(default_factory=dict)  # "{facility}" is filled in
    form: dict[str, str] | None = None  # body of a state-changing page route
    json: dict | None = None  # body of a state-changing API route

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, facility: str) -> str:
        path = self.path.replace("{facility}", facility)
        for name, value in self.params.items():
            path = path.replace("{" + name + "}", value)
        return path

    def query_for(self, facility: str) -> dict[str, str]:
        return {k: v.replace("{facility}", facility) for k, v in self.query.items()}


MATRIX = [
    Row("GET", "/", EVERYONE, ok=303),  # each role on to its landing page (tests/web/test_navigation.py)
    Row("GET", "/overview", EVERYONE),
    Row("POST", "/logout", EVERYONE, ok=303, form={}),
    Row("GET", "/api/v1/me", EVERYONE),
    Row("GET", "/api/v1/stock/on-hand", IN_SCOPE, query={"facility": "{facility}"}),
    Row("GET", "/api/v1/stock/card/{facility}/{item}", IN_SCOPE, params={"item": "MOR10"}),
    Row("GET", "/api/v1/audit", AUDITORS),
    # A patient is named in a URL by pseudonym only; a card goes in a POST body.
    Row("GET", "/api/v1/patients/{patient}/dispensings", AUDITORS, ok=404,
        params={"patient": "P-00000000000000000000"}),
    Row("POST", "/api/v1/patients/dispensings", AUDITORS, json={"health_card_id": "LY0000000001"}),
    Row("GET", "/notifications", EVERYONE),
    # Everyone may acknowledge their own notifications; one that is not theirs is not found.
    Row("POST", "/notifications/{notification_id}/ack", EVERYONE, ok=404, params={"notification_id": "999999"},
        form={}),
    # Pharmacy pages: staff act on a facility in their scope; auditors review and do not move stock.
    # An empty form is let in and refused for its content (422); only the facility's own staff reverse.
    Row("GET", "/pharmacy", PHARMACY_STAFF_ANYWHERE, ok=303),
    Row("GET", "/pharmacy/choose", PHARMACY_STAFF_ANYWHERE),
    *[Row("GET", f"/pharmacy/{{facility}}/{page}", PHARMACY_STAFF)
      for page in ("visit", "dispense", "items", "lots", "packs", "receipt", "transfer-out", "transfers-in", "loss",
                   "count", "today")],
    # The open prescriptions of a patient: the card in the body, never in the URL.
    Row("POST", "/pharmacy/{facility}/prescriptions", PHARMACY_STAFF,
        form={"health_card_id": "LY0000000001", "item_code": "MOR10"}),
    *[Row("POST", f"/pharmacy/{{facility}}/{page}", PHARMACY_STAFF, ok=422, form={})
      for page in ("visit", "dispense", "receipt", "transfer-out", "transfers-in", "loss", "count")],
    # A visit's patient history beside the form (an audited read, the card in the body), and the form
    # drawn again with a line added or its lots proposed (records nothing, always 200).
    Row("POST", "/pharmacy/{facility}/visit/history", PHARMACY_STAFF, form={"health_card_id": "LY0000000001"}),
    Row("POST", "/pharmacy/{facility}/visit/refresh", PHARMACY_STAFF, form={"action": "add"}),
    Row("POST", "/pharmacy/{facility}/reverse", PHARMACY_REVERSERS, ok=422, form={}),
    # Filling a form from a scanned barcode records nothing and always answers the form (200).
    Row("POST", "/pharmacy/{facility}/scan", PHARMACY_STAFF, form={"scan": "(01)09501101530003"}),
    # Auditor pages and the flags API: auditors and admins, within their scope; a flag that does
    # not exist is not found (scope on existing flags: tests/web/test_auditor.py).
    Row("GET", "/flags", REVIEWERS_IN_SCOPE, query={"facility": "{facility}"}),
    Row("GET", "/flags/{flag_id}", AUDITORS, ok=404, params={"flag_id": "F-none"}),
    Row("GET", "/flags/{flag_id}/export", AUDITORS, ok=404, params={"flag_id": "F-none"}),
    Row("POST", "/flags/{flag_id}/actions", AUDITORS, ok=404, params={"flag_id": "F-none"}, form={}),
    Row("GET", "/api/v1/flags", REVIEWERS_IN_SCOPE, query={"facility": "{facility}"}),
    Row("GET", "/api/v1/flags/{flag_id}", AUDITORS, ok=404, params={"flag_id": "F-none"}),
    Row("POST", "/api/v1/flags/{flag_id}/actions", AUDITORS, ok=404, params={"flag_id": "F-none"},
        json={"action": "comment", "comment": "x"}),
    # Ledger batches through the API: staff post for facilities in their scope; an incomplete
    # entry for a facility of theirs is let in and refused for its content (422).
    Row("POST", "/api/v1/entries", PHARMACY_STAFF, ok=422,
        json={"entries": [{"entry_id": "m-1", "facility_code": "{facility}"}]}),
    # Managers' stock pages: facility managers and admins, within their scope.
    Row("GET", "/stock", MANAGERS_IN_SCOPE, ok=303, query={"facility": "{facility}"}),
    Row("GET", "/stock/choose", MANAGERS_ANYWHERE),
    Row("GET", "/expiries", MANAGERS_ANYWHERE, ok=303),
    Row("GET", "/stock/{facility}", MANAGERS_IN_SCOPE),
    Row("GET", "/stock/{facility}/lots", MANAGERS_IN_SCOPE, query={"item": "MOR10"}),
    Row("GET", "/stock/{facility}/export/{table}", MANAGERS_IN_SCOPE, params={"table": "positions"}),
    Row("GET", "/stock/{facility}/card/{item}", MANAGERS_IN_SCOPE, params={"item": "MOR10"}),
    Row("GET", "/stock/{facility}/card/{item}/export", MANAGERS_IN_SCOPE, params={"item": "MOR10"}),
    # Admin pages: admins only; disabling a user who does not exist is not found.
    *[Row("GET", f"/admin/{page}", ADMINS) for page in ("users", "facilities", "ledger", "items")],
    Row("GET", "/admin/items/{code}", ADMINS, params={"code": "MOR10"}),
    # Editing an item that does not exist is not found; items are national master data, so a
    # scoped admin is refused before the item is even looked up.
    Row("POST", "/admin/items/{code}", NATIONAL_ADMINS, ok=404, params={"code": "NOPE"}, form={}),
    Row("POST", "/admin/users/{username}/disable", ADMINS, ok=404, params={"username": "nobody"}, form={}),
    Row("POST", "/admin/ledger/verify", ADMINS, form={}),
    # Users: admins within their scope; an empty form is refused for its content, a user who does
    # not exist (or lies outside the scope) is not found. Facilities: national admins only.
    Row("GET", "/admin/users/new", ADMINS),
    Row("POST", "/admin/users/new", ADMINS, ok=422, form={}),
    Row("GET", "/admin/users/{username}", ADMINS, ok=404, params={"username": "nobody"}),
    Row("POST", "/admin/users/{username}", ADMINS, ok=404, params={"username": "nobody"}, form={}),
    Row("POST", "/admin/users/{username}/enable", ADMINS, ok=404, params={"username": "nobody"}, form={}),
    Row("GET", "/admin/facilities/new", NATIONAL_ADMINS),
    Row("POST", "/admin/facilities/new", NATIONAL_ADMINS, ok=422, form={}),
    Row("GET", "/admin/facilities/{code}", NATIONAL_ADMINS, ok=404, params={"code": "NOPE"}),
    Row("POST", "/admin/facilities/{code}", NATIONAL_ADMINS, ok=404, params={"code": "NOPE"}, form={}),
    # The audit trail page: auditors and admins, limited to their scope like /api/v1/audit.
    Row("GET", "/audit", REVIEWERS_IN_SCOPE, query={"facility": "{facility}"}),
    Row("GET", "/dhis2/pushes", NATIONAL_ADMINS),  # and national managers (tests/web/test_dhis2_pages.py)
    # Interop API: bundles and exports within scope; importing needs a staff role (an empty body
    # is let in and refused for its content).
    Row("GET", "/api/v1/fhir/bundle", IN_SCOPE, query={"facility": "{facility}"}),
    Row("POST", "/api/v1/fhir/bundle", PHARMACY_STAFF_ANYWHERE, ok=422, json={}),
    Row("GET", "/api/v1/export/{name}", IN_SCOPE, params={"name": "on-hand.csv"}, query={"facility": "{facility}"}),
    Row("POST", "/api/v1/dhis2/{period}", IN_SCOPE, params={"period": "2026-03"}, query={"facility": "{facility}"},
        json={"orgUnits": {}, "items": {}}),
    # Replenishment: anyone lists and reconciles within scope; the requesting facility's staff prepare
    # (an empty period is let in and refused for its content); a requisition that does not exist is
    # not found whatever the step (who may take which step: tests/web/test_replenishment.py).
    Row("GET", "/requisitions", EVERYONE),
    Row("GET", "/requisitions/new/{facility}", PHARMACY_STAFF),
    Row("POST", "/requisitions/new/{facility}", PHARMACY_STAFF, ok=422, form={}),
    Row("GET", "/requisitions/{number}", EVERYONE, ok=404, params={"number": "REQ-none"}),
    Row("POST", "/requisitions/{number}/{step}", EVERYONE, ok=404, params={"number": "REQ-none", "step": "submit"},
        form={}),
    Row("GET", "/requisitions/{number}/pdf/{document}", EVERYONE, ok=404,
        params={"number": "REQ-none", "document": "waybill"}),
    Row("GET", "/stock/{facility}/levels", MANAGERS_IN_SCOPE),
    Row("GET", "/stock/{facility}/count-sheet", PHARMACY_STAFF),
    Row("GET", "/stock/{facility}/card/{item}/pdf", MANAGERS_IN_SCOPE, params={"item": "MOR10"}),
    Row("POST", "/stock/{facility}/levels", MANAGERS_IN_SCOPE, ok=422, form={}),
    Row("GET", "/reconciliation", IN_SCOPE, query={"facility": "{facility}"}),
    Row("GET", "/reconciliation/export", IN_SCOPE, query={"facility": "{facility}"}),
    Row("GET", "/api/v1/requisitions", IN_SCOPE, query={"facility": "{facility}"}),
    Row("POST", "/api/v1/requisitions", PHARMACY_STAFF, ok=422, json={"facility_code": "{facility}"}),
    Row("GET", "/api/v1/requisitions/reconciliation", IN_SCOPE, query={"facility": "{facility}"}),
    Row("GET", "/api/v1/requisitions/{number}", EVERYONE, ok=404, params={"number": "REQ-none"}),
    Row("GET", "/api/v1/requisitions/{number}/fhir", EVERYONE, ok=404, params={"number": "REQ-none"}),
    # Pack sizes are master data: anyone may look a barcode up; one no pack carries is not found.
    Row("GET", "/api/v1/packs/scan", EVERYONE, ok=404, query={"code": "(01)09501101530003"}),
    *[Row("POST", f"/api/v1/requisitions/{{number}}/{step}", EVERYONE, ok=404, params={"number": "REQ-none"},
          json=body)
      for step, body in (("lines", {"lines": []}), ("submit", None), ("approve", {"lines": []}),
                         ("reject", {"reason": "x"}), ("fulfil", None), ("receive", {"lines": []}))],
]


def _call(client, row: Row, facility: str, token: str | None):
    headers = {"X-CSRF-Token": token} if token and row.method != "GET" else {}
    return client.request(row.method, row.url(facility), params=row.query_for(facility), headers=headers,
                          data=row.form or None, json=_filled(row.json, facility))


def _filled(value, facility: str):
    """A JSON body with "{facility}" filled in (API rows that name the facility in the body)."""
    if isinstance(value, str):
        return value.replace("{facility}", facility)
    if isinstance(value, list):
        return [_filled(v, facility) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v, facility) for k, v in value.items()}
    return value


def _expected(row: Row, cell: str) -> int:
    return row.ok if cell == ALLOW else 403


@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.id)
def test_access_cell(live_server, row):
    failures = []
    for role, (username, own, other) in ROLE_USERS.items():
        assert role in row.cells, f"{row.id}: no cells for role {role}"
        for where, facility, cell in (("own", own, row.cells[role][0]), ("other", other, row.cells[role][1])):
            c = live_server.login(username)  # a fresh login per cell: a cell may end it (logout)
            token = page_csrf(c) if row.method != "GET" else None
            r = _call(c, row, facility, token)
            want = _expected(row, cell)
            if r.status_code != want:
                failures.append(f"{role} on {where} facility {facility}: {r.status_code}, expected {want} "
                                f"({cell}): {r.text[:200]}")
            elif cell != ALLOW and row.path.startswith("/api/"):
                assert _refusal(r), (role, where)
    assert not failures, f"{row.id}:\n" + "\n".join(failures)


def _refusal(r) -> str:
    """The message of an API refusal: a FHIR route answers an OperationOutcome, the rest the API's
    own error."""
    body = r.json()
    if r.request.url.path.startswith("/api/v1/fhir/"):
        assert body["resourceType"] == "OperationOutcome", body
        return body["issue"][0]["diagnostics"]
    return body["error"]["message"]


@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.id)
def test_access_without_login(live_server, row):
    anon = live_server.client()
    token = csrf_of(anon.get("/login").text)  # a valid pre-login token: the refusal is access, not CSRF
    r = _call(anon, row, "H1", token)
    if row.path.startswith("/api/"):
        assert r.status_code == 401 and _refusal(r) == "log in first"
    else:
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_every_route_is_in_the_matrix(sqlite_engine):
    from tests.web.conftest import make_settings
    from web.app import create_app

    app = create_app(sqlite_engine, make_settings())
    declared = {(m, r.path) for r in app_routes(app) for m in r.methods if m != "HEAD"
                if r.path not in PUBLIC_PATHS}
    listed = {(row.method, row.path) for row in MATRIX}
    assert declared - listed == set(), "routes missing from the access matrix"
    assert listed - declared == set(), "matrix rows for routes that do not exist"
    for row in MATRIX:
        assert set(row.cells) == set(ROLE_USERS), row.id
