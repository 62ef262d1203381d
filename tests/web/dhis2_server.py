"""A DHIS2 Web API on loopback for the push tests: ``POST /api/dataValueSets`` answering with an
import summary as DHIS2 documents it (2.38 and later: a web message wrapping the summary, HTTP 409
when there are conflicts; older versions: the bare summary), checking authentication and the org
units, data elements and category option combos it knows, by uid or by code as the request's id
scheme parameters say, and keeping the values so a second push counts as updates."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

IMPORT_OPTIONS = {"idSchemes": {}, "dryRun": False, "async": False, "importStrategy": "CREATE_AND_UPDATE",
                  "mergeMode": "REPLACE", "reportMode": "FULL"}


@dataclass
class Dhis2Server:
    """Known metadata as {kind: {uid: code}}; ``token`` or ``user``/``password`` accepted."""

    metadata: dict[str, dict[str, str]]
    token: str = "d2pat_loopback"
    user: str = "dawa"
    password: str = "district-2026"
    legacy: bool = False
    stored: dict[tuple, str] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _authenticated(self, headers) -> bool:
        auth = headers.get("Authorization") or ""
        if auth == f"ApiToken {self.token}":
            return True
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return auth == f"Basic {expected}"

    def _reply(self, h, status: int, body: dict):
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json;charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _known(self, kind: str, value: str | None, scheme: str) -> bool:
        table = self.metadata.get(kind, {})
        return value in (table.values() if scheme == "CODE" else table)

    def _handle(self, h):
        parts = urlsplit(h.path)
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"{}")
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append({"path": parts.path, "params": params, "body": body})
        if not self._authenticated(h.headers):
            return self._reply(h, 401, {"httpStatus": "Unauthorized", "httpStatusCode": 401, "status": "ERROR",
                                        "message": "Unauthorized"})
        if parts.path != "/api/dataValueSets":
            return self._reply(h, 404, {"httpStatus": "Not Found", "httpStatusCode": 404, "status": "ERROR"})
        general = params.get("idScheme", "UID").upper()
        schemes = {"dataElement": params.get("dataElementIdScheme", general).upper(),
                   "orgUnit": params.get("orgUnitIdScheme", general).upper(),
                   "categoryOptionCombo": params.get("categoryOptionComboIdScheme", general).upper()}
        counts = {"imported": 0, "updated": 0, "ignored": 0, "deleted": 0}
        conflicts: dict[tuple, dict] = {}
        for i, dv in enumerate(body.get("dataValues", [])):
            bad = None
            for prop, kind in (("dataElement", "dataElement"), ("orgUnit", "orgUnit"),
                               ("categoryOptionCombo", "categoryOptionCombo")):
                value = dv.get(prop)
                if prop == "categoryOptionCombo" and value is None:
                    continue
                if not self._known(kind, value, schemes[kind]):
                    bad = (prop, value)
                    break
            if bad:
                counts["ignored"] += 1
                what = {"dataElement": "Data element", "orgUnit": "Organisation unit",
                        "categoryOptionCombo": "Category option combo"}[bad[0]]
                code = {"dataElement": "E7610", "orgUnit": "E7612", "categoryOptionCombo": "E7611"}[bad[0]]
                c = conflicts.setdefault(bad, {"object": bad[1], "objects": {bad[0]: bad[1]},
                                               "value": f"{what} not found or not accessible: `{bad[1]}`",
                                               "errorCode": code, "property": bad[0], "indexes": []})
                c["indexes"].append(i)
                continue
            key = (dv["dataElement"], dv["period"], dv["orgUnit"], dv.get("categoryOptionCombo"),
                   dv.get("attributeOptionCombo"))
            counts["updated" if key in self.stored else "imported"] += 1
            self.stored[key] = dv["value"]
        status = "WARNING" if conflicts else "SUCCESS"
        summary = {"responseType": "ImportSummary", "status": status, "importOptions": IMPORT_OPTIONS,
                   "description": "Import process completed successfully", "importCount": counts,
                   "conflicts": list(conflicts.values()), "dataSetComplete": "false"}
        if self.legacy:
            return self._reply(h, 200, summary)
        if conflicts:
            return self._reply(h, 409, {"httpStatus": "Conflict", "httpStatusCode": 409, "status": "WARNING",
                                        "message": "One more conflicts encountered, please check import summary.",
                                        "response": summary})
        return self._reply(h, 200, {"httpStatus": "OK", "httpStatusCode": 200, "status": "OK",
                                    "message": "Import was successful.", "response": summary})
