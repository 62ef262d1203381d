"""Sending a month's dataValueSets to the configured DHIS2 server, and keeping what it answered.

``push`` posts the payload of ``web.interop.dhis2.export_data_value_set`` to
``DAWA_DHIS2__URL/api/dataValueSets`` (import strategy CREATE_AND_UPDATE, the mapping's id schemes
as the import parameters of the same names), authenticated by a personal access token
(``Authorization: ApiToken ...``) or a user and password. DHIS2 answers with an import summary:
a status (SUCCESS, WARNING, ERROR), the count of values imported, updated, ignored and deleted,
and the conflicts, each naming the object refused and why. Versions from 2.38 wrap the summary in
a web message (``{"httpStatusCode": 409, "response": {"responseType": "ImportSummary", ...}}``),
older ones send it bare; both are read. Every push is recorded (``dhis2_push``) with that summary,
or with why it failed when DHIS2 could not be reached or refused the request, so the conflicts stay
visible after the command or the scheduled job has ended.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import DawaError
from stock.settings import Settings
from web.interop.dhis2 import Dhis2Export, export_data_value_set
from web.interop.dhis2_mapping import Mapping, MappingError, load_mapping
from web.interop.models import Dhis2Push


class Dhis2NotConfigured(DawaError):
    field = "dhis2"


@dataclass
class PushResult:
    record: Dhis2Push
    export: Dhis2Export
    conflicts: list[dict] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The outcome as a person reads it: the counts, then each conflict."""
        r = self.record
        if r.status == "FAILED":
            return [f"DHIS2 push of {r.period} failed: {r.message}"]
        out = [f"DHIS2 {r.status}: {r.sent} value(s) sent for {r.period}; {r.imported} imported, {r.updated} "
               f"updated, {r.ignored} ignored, {r.deleted} deleted; {len(self.conflicts)} conflict(s)"]
        out += [f"conflict: {c.get('object', '?')}: {c.get('value', '')}" for c in self.conflicts]
        return out


def _public(url: str) -> str:
    """The URL without any user or password in it, as stored and shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _summary(body) -> dict | None:
    if not isinstance(body, dict):
        return None
    inner = body.get("response")
    if isinstance(inner, dict) and ("importCount" in inner or inner.get("responseType") == "ImportSummary"):
        return inner
    if "importCount" in body or body.get("responseType") == "ImportSummary":
        return body
    return None


def _send(settings: Settings, payload: dict, params: dict) -> tuple[str, dict | None, str | None]:
    """(status, import summary, failure message) of one POST."""
    conf = settings.dhis2
    headers = {"Accept": "application/json"}
    auth = None
    if conf.token:
        headers["Authorization"] = f"ApiToken {conf.token}"
    elif conf.username:
        auth = (conf.username, conf.password or "")
    url = conf.url.rstrip("/") + "/api/dataValueSets"
    try:
        response = httpx.post(url, json=payload, params=params, headers=headers, auth=auth, timeout=conf.timeout_s)
    except httpx.HTTPError as exc:
        return "FAILED", None, f"could not reach {_public(url)}: {exc.__class__.__name__}: {exc}"
    try:
        body = response.json()
    except ValueError:
        body = None
    summary = _summary(body)
    if summary is not None:
        return str(summary.get("status") or body.get("status") or "UNKNOWN").upper(), summary, None
    if response.status_code in (401, 403):
        return "FAILED", None, f"DHIS2 refused the credentials (HTTP {response.status_code})"
    text = body.get("message") if isinstance(body, dict) else response.text[:300]
    return "FAILED", None, f"DHIS2 answered HTTP {response.status_code} without an import summary: {text}"


def push(session: Session, settings: Settings, mapping: Mapping, period: str, *, pushed_by: str,
         now: datetime | None = None, facility_codes: Collection[str] | None = None) -> PushResult:
    """Send the month's values and record the answer (the caller commits)."""
    if not settings.dhis2.url:
        raise Dhis2NotConfigured("no DHIS2 server is configured: set DAWA_DHIS2__URL (and a token or user)")
    now = now or datetime.now(timezone.utc)
    export = export_data_value_set(session, mapping, period, default_zone=settings.default_timezone, now=now,
                                   facility_codes=facility_codes)
    params = {"importStrategy": "CREATE_AND_UPDATE", **mapping.schemes}
    status, summary, message = _send(settings, export.payload, params)
    counts = (summary or {}).get("importCount") or {}
    conflicts = [c for c in (summary or {}).get("conflicts") or [] if isinstance(c, dict)]
    record = Dhis2Push(at=now, period=period, server=_public(settings.dhis2.url), pushed_by=pushed_by,
                       sent=len(export.payload["dataValues"]), status=status[:16],
                       imported=int(counts.get("imported") or 0), updated=int(counts.get("updated") or 0),
                       ignored=int(counts.get("ignored") or 0), deleted=int(counts.get("deleted") or 0),
                       conflicts=json.dumps(conflicts, ensure_ascii=False) if conflicts else None, message=message)
    session.add(record)
    session.flush()
    return PushResult(record, export, conflicts)


def recent(session: Session, limit: int = 20) -> list[Dhis2Push]:
    return list(session.scalars(select(Dhis2Push).order_by(Dhis2Push.id.desc()).limit(limit)))


def previous_month(now: datetime, zone: str) -> str:
    first = now.astimezone(ZoneInfo(zone)).date().replace(day=1)
    last = first - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


def push_job(session: Session, settings: Settings, now: datetime):
    """The scheduled push: last month's figures (in the default zone) to the configured server."""
    from web.alerts.results import JobResult

    result = JobResult("dhis2")
    if not settings.dhis2.url or not settings.dhis2.mapping:
        result.notes.append("DHIS2 push not configured (dhis2.url and dhis2.mapping): nothing sent")
        return result
    try:
        mapping = load_mapping(settings.dhis2.mapping)
    except MappingError as exc:
        result.errors.extend(exc.problems)
        return result
    outcome = push(session, settings, mapping, previous_month(now, settings.default_timezone),
                   pushed_by="scheduler", now=now)
    session.commit()
    lines = outcome.lines()
    result.notes.append(lines[0])
    if outcome.record.status in ("FAILED", "ERROR"):
        result.errors.extend(lines)
    else:
        result.errors.extend(lines[1:])
    return result


__all__ = ["push", "push_job", "recent", "previous_month", "PushResult", "Dhis2NotConfigured"]
