"""From a condition to messages in people's hands: state changes, routing, delivery, digests.

An alert goes out when its condition *becomes* active (``transition``); a condition that stays
active is not announced again until it has resolved and returned. Who hears of it follows role and
scope (the rules of web.access): a facility's managers, their region's, and national ones. Each
recipient's preferences choose channel, language, immediate or digest, and minimum severity.

Deliveries are written ``pending`` and committed before anything is sent, and each outcome is
committed as it comes: no database lock is held while a message is in flight, a failing channel
only fails its own rows, and a run that dies leaves pending rows the next run sends.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.models import Facility, User
from stock.settings import Settings
from web.access import scope_of
from web.alerts.channels import SENDERS, Outgoing, add_notification, with_retries
from web.alerts.messages import Composed, Message, batch, digest, line, render, stored
from web.alerts.models import SEVERITIES, AlertDelivery, AlertPreference, AlertState

RANK = {s: i for i, s in enumerate(SEVERITIES)}
DEFAULT_MIN_SEVERITY = "medium"
BATCH_LINES = 30
"""Alerts listed one by one in a run's message; any more are counted."""


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str
    severity: str
    facility: Facility | None
    audience: tuple[str, ...]
    params: dict[str, str]
    link: str | None = None


@dataclass(frozen=True)
class Route:
    user: User
    preference_id: int | None
    channel: str
    address: str | None
    language: str
    mode: str
    min_severity: str


@dataclass
class Tally:
    started: int = 0
    resolved: int = 0
    queued: int = 0
    held: int = 0
    in_app: int = 0
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    told: dict[tuple, list[tuple[Route, AlertDelivery, Message]]] = field(default_factory=dict)
    """This run's immediate alerts per recipient and channel, until ``close_run`` sends each one
    message."""


def transition(session: Session, key: str, kind: str, active: bool, now: datetime, *,
               facility_id: int | None = None, detail: str | None = None) -> bool:
    """Record that the condition ``key`` is (or is not) present now; True when it has just become
    active, which is the one moment it is announced."""
    state = session.get(AlertState, key)
    if state is None:
        if not active:
            return False
        session.add(AlertState(key=key, kind=kind, state="active", since=now, last_checked=now,
                               facility_id=facility_id, detail=detail))
        return True
    state.last_checked = now
    if detail is not None:
        state.detail = detail
    if active and state.state == "resolved":
        state.state, state.since = "active", now
        return True
    if not active and state.state == "active":
        state.state, state.since = "resolved", now
    return False


def resolve_missing(session: Session, kinds: list[str], present: set[str], now: datetime) -> int:
    """Mark resolved every active condition of ``kinds`` not seen in this run."""
    stale = session.scalars(select(AlertState).where(AlertState.kind.in_(kinds), AlertState.state == "active"))
    count = 0
    for state in stale:
        if state.key not in present:
            state.state, state.since, state.last_checked = "resolved", now, now
            count += 1
    return count


def recipients(session: Session, roles: tuple[str, ...], facility: Facility | None) -> list[User]:
    """Active users with one of ``roles`` whose scope covers ``facility`` (national users only
    when the alert concerns no one facility)."""
    users = session.scalars(select(User).where(User.active.is_(True), User.role.in_(roles)).order_by(User.id))
    out = []
    for user in users:
        scope = scope_of(user)
        if scope.kind == "national" or (facility is not None and scope.allows(facility)):
            out.append(user)
    return out


def routes_for(session: Session, user: User) -> list[Route]:
    prefs = session.scalars(select(AlertPreference).where(AlertPreference.user_id == user.id,
                                                          AlertPreference.active.is_(True))
                            .order_by(AlertPreference.id)).all()
    own = user.language or "en"
    if not prefs:
        return [Route(user, None, "in_app", None, own, "immediate", DEFAULT_MIN_SEVERITY)]
    return [Route(user, p.id, p.channel, p.address, p.language or own, p.mode, p.min_severity) for p in prefs]


def announce(session: Session, alert: Alert, now: datetime, tally: Tally) -> None:
    """Write the alert for everyone it concerns: held for a digest, or kept for the one message
    each recipient gets at the end of the run (``close_run``)."""
    for user in recipients(session, alert.audience, alert.facility):
        for route in routes_for(session, user):
            if RANK[alert.severity] < RANK[route.min_severity]:
                continue
            message = render(alert.kind, route.language, alert.params)
            if route.mode == "digest":
                _record(session, route, alert.key, alert.kind, alert.severity, message, alert.link, now, tally,
                        hold=True)
                continue
            row = _row(route, alert.key, alert.kind, alert.severity, message, alert.link, now)
            session.add(row)
            tally.told.setdefault((user.id, route.preference_id, route.channel, route.address, route.language),
                                  []).append((route, row, message))


def close_run(session: Session, settings: Settings, now: datetime, tally: Tally) -> None:
    """Give each recipient one message per channel for everything this run told them: the alert
    itself when there is one, else one message listing them all (each alert's own row is kept in
    the history, marked ``digested`` into it). A scan that raises forty flags is one e-mail."""
    for (user_id, pref_id, channel, address, language), told in tally.told.items():
        route = told[0][0]
        if len(told) == 1:
            _, row, message = told[0]
            _settle(session, route, row, message, now, tally)
            continue
        for _, row, _ in told:
            row.status = "digested"
        severity = max((row.severity for _, row, _ in told), key=RANK.__getitem__)
        # Strongest first; past BATCH_LINES the rest are counted, and the link leads to them all.
        ranked = sorted(told, key=lambda t: -RANK[t[1].severity])
        lines = [_line(row, message) for _, row, message in ranked[:BATCH_LINES]]
        message = batch(lines, len(told), BATCH_LINES).render(language)
        where = "/flags" if all(row.kind == "flag" for _, row, _ in told) else "/notifications"
        _record(session, route, f"run:{user_id}:{now.isoformat(timespec='seconds')}", "batch", severity, message,
                settings.alerts.base_url.rstrip("/") + where, now, tally)
    tally.told.clear()
    session.flush()


def _line(row: AlertDelivery, message: Message) -> list:
    """One alert in a list of several: severity, title, the first line of what it says, link."""
    if message.composed is None:
        return line(row.severity, message.title, None, row.link)
    composed = message.composed
    return line(row.severity, composed.title, composed.body[0] if composed.body else None, row.link)


def _row(route: Route, key: str, kind: str, severity: str, message: Message, link: str | None,
         now: datetime) -> AlertDelivery:
    return AlertDelivery(created_at=now, user_id=route.user.id, preference_id=route.preference_id,
                         alert_key=key, kind=kind, severity=severity, title=message.title[:300],
                         body=message.body, messages=message.composed.to_json() if message.composed else None,
                         link=link, channel=route.channel, address=route.address,
                         language=message.language, status="pending", attempts=0)


def _settle(session: Session, route: Route, row: AlertDelivery, message: Message, now: datetime,
            tally: Tally) -> None:
    """An in-app message is delivered by writing it; others wait, pending, for ``deliver_pending``."""
    if route.channel == "in_app":
        add_notification(session, route.user.id, message, row.link, row.alert_key, now)
        row.status, row.attempts, row.sent_at = "sent", 1, now
        tally.in_app += 1
    else:
        tally.queued += 1


def _record(session: Session, route: Route, key: str, kind: str, severity: str, message: Message,
            link: str | None, now: datetime, tally: Tally, *, hold: bool = False) -> AlertDelivery:
    row = _row(route, key, kind, severity, message, link, now)
    if hold:
        row.status = "held"
        tally.held += 1
    else:
        _settle(session, route, row, message, now, tally)
    session.add(row)
    return row


def deliver_pending(session: Session, settings: Settings, now: datetime, tally: Tally,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    """Send every pending e-mail and webhook, each with its retries, committing each outcome."""
    rows = session.execute(
        select(AlertDelivery, User.username).join(User, User.id == AlertDelivery.user_id)
        .where(AlertDelivery.status == "pending").order_by(AlertDelivery.id)).all()
    outgoing = [Outgoing(r.id, r.alert_key, r.kind, r.severity, r.channel, r.address, username,
                         stored(r.language, r.title, r.body, r.messages), r.link) for r, username in rows]
    session.commit()  # nothing held open while messages are in flight
    for out in outgoing:
        send = SENDERS.get(out.channel)
        if send is None:
            result_ok, attempts, error = False, 0, f"channel {out.channel} cannot send on its own"
        else:
            result = with_retries(lambda: send(out, settings.alerts, now), settings.alerts, sleep)
            result_ok, attempts, error = result.ok, result.attempts, result.error
        row = session.get(AlertDelivery, out.delivery_id)
        row.attempts += attempts
        row.error = error
        if result_ok:
            row.status, row.sent_at = "sent", now
            tally.sent += 1
        else:
            row.status = "failed"
            tally.failed += 1
            tally.errors.append(f"{out.channel} to {out.address}: {error}")
        session.commit()


def send_digests(session: Session, settings: Settings, now: datetime, tally: Tally) -> None:
    """One message per recipient and preference holding everything held for it since the last."""
    held = session.scalars(select(AlertDelivery).where(AlertDelivery.status == "held")
                           .order_by(AlertDelivery.user_id, AlertDelivery.preference_id, AlertDelivery.id)).all()
    groups: dict[tuple, list[AlertDelivery]] = defaultdict(list)
    for row in held:
        groups[(row.user_id, row.preference_id, row.channel, row.address, row.language)].append(row)
    for (user_id, pref_id, channel, address, language), rows in groups.items():
        user = session.get(User, user_id)
        since = min(r.created_at for r in rows).date()
        lines = [line(r.severity, Composed.from_json(r.messages).title if r.messages else r.title, None, r.link)
                 for r in rows]
        message = digest(lines, len(rows), since).render(language)
        severity = max((r.severity for r in rows), key=RANK.__getitem__)
        route = Route(user, pref_id, channel, address, language, "immediate", "low")
        _record(session, route, f"digest:{user_id}:{now.date().isoformat()}", "digest", severity, message,
                settings.alerts.base_url.rstrip("/") + "/notifications", now, tally)
        for r in rows:
            r.status = "digested"
    session.flush()
