"""The scheduled jobs. Each is a plain function ``(session, settings, now) -> JobResult``: the
scheduler, ``dawa jobs run NAME`` and the tests call them the same way, the tests with a clock of
their own. A job commits as it goes (see web.alerts.dispatch): what it found, then each delivery.

Stock figures come from stock.queries and ledger checks from stock.chain and stock.balances; the
jobs only decide what is worth telling and to whom.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import balances, chain
from stock.models import Facility, Item, LedgerEntry
from stock.queries import expiring, stock_positions
from stock.pseudonyms import patient_key, pseudonymise_text
from stock.settings import Settings
from web import audit_chain, witness
from web.alerts.dispatch import (Alert, Tally, announce, close_run, deliver_pending, resolve_missing, send_digests,
                                 transition)
from web.alerts.models import AlertState
from web.messages import as_json as reason_messages
from web.interop.dhis2_push import push_job

MANAGERS = ("facility_manager",)
AUDITORS = ("auditor",)
LEDGER_WATCH = ("admin", "auditor")
OPEN_STATUSES = ("open", "assigned", "escalated")


@dataclass
class JobResult:
    job: str
    started: int = 0
    resolved: int = 0
    in_app: int = 0
    held: int = 0
    sent: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, job: str, tally: Tally, *notes: str) -> "JobResult":
        return cls(job, tally.started, tally.resolved, tally.in_app, tally.held, tally.sent, tally.failed,
                   list(notes), tally.errors)

    def summary(self) -> str:
        text = (f"{self.job}: {self.started} new alert(s), {self.resolved} resolved; {self.in_app} in-app, "
                f"{self.sent} sent, {self.failed} failed, {self.held} held for digest")
        return "; ".join([text, *self.notes])


def _link(settings: Settings, path: str) -> str:
    return settings.alerts.base_url.rstrip("/") + path


def _num(value: Decimal | float | int) -> str:
    return f"{value:,}" if not isinstance(value, Decimal) else f"{value.normalize():f}"


def _finish(session: Session, settings: Settings, now: datetime, tally: Tally) -> None:
    close_run(session, settings, now, tally)
    session.commit()
    deliver_pending(session, settings, now, tally)


# --- incremental scan and new flags -----------------------------------------------------------

def scan_and_alert(session: Session, settings: Settings, now: datetime) -> JobResult:
    """Scan what is new in the ledger, then tell auditors whose scope covers a flag's facility of
    each flag not announced before (at or above their minimum severity)."""
    from anomaly import scan as scanning
    from anomaly.models import Flag

    report = scanning.run(session, now=now, settings=settings.detection, patient_key=patient_key(settings))
    session.commit()
    tally = Tally()
    known = set(session.scalars(select(AlertState.key).where(AlertState.kind == "flag")))
    oldest = now - timedelta(days=settings.alerts.flag_max_age_days)
    rows = session.execute(select(Flag, Facility).outerjoin(Facility, Facility.id == Flag.facility_id)
                           .where(Flag.status.in_(OPEN_STATUSES)).order_by(Flag.rank_score.desc()))
    for flag, facility in rows:
        key = f"flag:{flag.flag_id}"
        if key in known:
            continue
        reason = flag.reason
        cards = [flag.subject_id] if flag.subject == "patient" else []
        if cards:  # alerts name the patient by pseudonym, never by card
            reason = pseudonymise_text(reason, cards, patient_key(settings))
        transition(session, key, "flag", True, now, facility_id=flag.facility_id, detail=reason[:500])
        if flag.created_at < oldest:
            continue  # already old when alerts began: recorded, not announced
        tally.started += 1
        announce(session, Alert(key, "flag", flag.severity, facility, AUDITORS, {
            "severity": flag.severity, "facility": facility.code if facility else "-",
            "reason": reason, "messages": reason_messages(flag.messages, cards, patient_key(settings)),
            "score": f"{flag.score:.2f}", "flag_id": flag.flag_id,
            "detectors": flag.detectors}, _link(settings, f"/flags/{flag.flag_id}")), now, tally)
    _finish(session, settings, now, tally)
    scanned = ("nothing new in the ledger" if report.skipped
               else f"scan {report.scan_id}: {report.new} new flag(s), {report.updated} updated")
    return JobResult.of("scan", tally, scanned)


# --- daily stock alerts -----------------------------------------------------------------------

def _today(settings: Settings, now: datetime):
    return now.astimezone(ZoneInfo(settings.default_timezone)).date()


def stock_alerts(session: Session, settings: Settings, now: datetime) -> JobResult:
    """Stockouts, stock below the minimum months, lots coming within 30/60/90 days of expiry, lots
    past it still on hand, and recent counts short of book, each told once to the facility's managers (and its region's and
    national managers)."""
    tally = Tally()
    today = _today(settings, now)
    facilities = {f.code: f for f in session.scalars(select(Facility))}
    items = {i.code: i for i in session.scalars(select(Item))}
    present: set[str] = set()

    def check(key: str, kind: str, severity: str, facility: Facility, params: dict, link: str) -> None:
        present.add(key)
        if transition(session, key, kind, True, now, facility_id=facility.id):
            tally.started += 1
            announce(session, Alert(key, kind, severity, facility, MANAGERS, params, link), now, tally)

    for p in stock_positions(session, today=today, months=settings.amc_months):
        fac, item = facilities[p.facility_code], items[p.item_code]
        base = {"facility": fac.code, "facility_name": fac.name, "item": item.code, "item_name": item.name,
                "unit": item.unit, "on_hand": _num(p.on_hand), "amc": _num(p.amc),
                "months": _num(p.months_of_stock) if p.months_of_stock is not None else "-"}
        link = _link(settings, f"/stock?facility={fac.code}&item={item.code}")
        if p.stocked_out:
            check(f"stockout:{fac.code}:{item.code}", "stockout", "high", fac, base, link)
        elif p.months_of_stock is not None and p.months_of_stock < Decimal(str(settings.alerts.low_stock_months)):
            check(f"low_stock:{fac.code}:{item.code}", "low_stock", "medium", fac, base, link)

    buckets = sorted(settings.alerts.expiry_days)
    severities = ["high", "medium"] + ["low"] * max(0, len(buckets) - 2)
    if buckets:
        for lot in expiring(session, within_days=buckets[-1], today=today):
            fac, item = facilities[lot.facility_code], items[lot.item_code]
            days_left = (lot.expiry_date - today).days
            lot_params = {"facility": fac.code, "facility_name": fac.name, "item": item.code,
                          "item_name": item.name, "unit": item.unit, "lot": lot.lot_number or "-",
                          "expiry": lot.expiry_date.isoformat(), "on_hand": _num(lot.on_hand)}
            if days_left < 0:
                # Past its date it no longer "expires within" anything: it has expired, and waits
                # to be written off.
                check(f"expired:{fac.code}:{item.code}:{lot.lot_number}", "expired", "high", fac, lot_params,
                      _link(settings, f"/stock?facility={fac.code}&item={item.code}"))
                continue
            reached = [i for i, n in enumerate(buckets) if days_left <= n]
            # Only the nearest threshold newly crossed is told; wider ones are recorded quietly.
            started = [i for i in reached
                       if transition(session, f"expiring_{buckets[i]}:{fac.code}:{item.code}:{lot.lot_number}",
                                     f"expiring_{buckets[i]}", True, now, facility_id=fac.id)]
            for i in reached:
                present.add(f"expiring_{buckets[i]}:{fac.code}:{item.code}:{lot.lot_number}")
            if started:
                i = min(started)
                key = f"expiring_{buckets[i]}:{fac.code}:{item.code}:{lot.lot_number}"
                tally.started += 1
                announce(session, Alert(key, "expiring", severities[i], fac, MANAGERS,
                                        {**lot_params, "days": str(buckets[i])},
                                        _link(settings, f"/stock?facility={fac.code}&item={item.code}")),
                         now, tally)

    since = now - timedelta(days=settings.alerts.count_lookback_days)
    counts = session.execute(
        select(LedgerEntry, Facility, Item).join(Facility, Facility.id == LedgerEntry.facility_id)
        .join(Item, Item.id == LedgerEntry.item_id)
        .where(LedgerEntry.kind == "count", LedgerEntry.quantity < LedgerEntry.book_quantity,
               LedgerEntry.recorded_at >= since, LedgerEntry.recorded_at <= now)
        .order_by(LedgerEntry.id))
    for e, fac, item in counts:
        key = f"count_short:{e.entry_id}"
        if transition(session, key, "count_short", True, now, facility_id=fac.id):
            tally.started += 1
            announce(session, Alert(key, "count_short", "high" if item.controlled else "medium", fac, MANAGERS, {
                "facility": fac.code, "facility_name": fac.name, "item": item.code, "item_name": item.name,
                "unit": item.unit, "date": e.occurred_at.date().isoformat(), "counted": _num(e.quantity),
                "book": _num(e.book_quantity), "short": _num(e.book_quantity - e.quantity),
                "entry_id": e.entry_id, "recorded_by": e.recorded_by},
                _link(settings, f"/stock?facility={fac.code}&item={item.code}")), now, tally)

    kinds = ["stockout", "low_stock", "expired", *(f"expiring_{n}" for n in buckets)]
    tally.resolved = resolve_missing(session, kinds, present, now)
    _finish(session, settings, now, tally)
    return JobResult.of("stock", tally, f"as of {today}")


# --- daily ledger verification ----------------------------------------------------------------

def verify_ledger(session: Session, settings: Settings, now: datetime) -> JobResult:
    """Recompute every hash chain and every balance; tell admins and auditors (in scope) of each
    broken chain or drifted balance when it is first found."""
    tally = Tally()
    facilities = {f.code: f for f in session.scalars(select(Facility))}
    report = chain.verify(session)
    drifts = balances.drift(session)
    present: set[str] = set()
    findings = [(f"chain:{b.facility_code}", "chain_broken", b.facility_code, str(b)) for b in report.breaks]
    findings += [(f"drift:{d.facility_code}:{d.item_code}:{d.lot_number}", "drift", d.facility_code, str(d))
                 for d in drifts]
    for key, kind, code, problem in findings:
        fac = facilities.get(code)
        present.add(key)
        if transition(session, key, kind, True, now, facility_id=fac.id if fac else None, detail=problem):
            tally.started += 1
            announce(session, Alert(key, kind, "high", fac, LEDGER_WATCH,
                                    {"facility": code, "problem": problem}), now, tally)
    audit_chain.seal(session, now)
    sealed = audit_chain.verify(session)
    for problem in sealed.problems:
        present.add("audit:chain")
        if transition(session, "audit:chain", "audit_broken", True, now, detail=problem):
            tally.started += 1
            announce(session, Alert("audit:chain", "audit_broken", "high", None, LEDGER_WATCH,
                                    {"problem": problem}), now, tally)
    tally.resolved = resolve_missing(session, ["chain_broken", "drift", "audit_broken"], present, now)
    witnessed = _witness(session, settings, now, tally)
    _finish(session, settings, now, tally)
    return JobResult.of("verify", tally, f"{report.entries} entries in {report.facilities} chains, "
                                         f"{len(report.breaks)} broken, {len(drifts)} balance(s) drifted, "
                                         f"{sealed.records} audit records sealed"
                                         + (f", heads signed to {witnessed}" if witnessed else ""))


def _witness(session: Session, settings: Settings, now: datetime, tally: Tally):
    """Sign the heads, write them outside the database and send them to the national auditors,
    when a witness key is configured; the file written, or None."""
    if not settings.witness_key_file:
        return None
    data = witness.signed_heads(session, witness.load_private(settings.witness_key_file), now)
    path = witness.write(data, settings.witness_dir or Path(settings.witness_key_file).parent / "heads")
    announce(session, Alert(f"heads:{data['signed_at']}", "heads_witnessed", "high", None, ("auditor",), {
        "signed_at": data["signed_at"], "file": str(path),
        "heads": json.dumps(data, indent=1, ensure_ascii=False)}), now, tally)
    return path


# --- weekly digest ----------------------------------------------------------------------------

def weekly_digest(session: Session, settings: Settings, now: datetime) -> JobResult:
    """Send each recipient one message with everything held for their digest."""
    tally = Tally()
    send_digests(session, settings, now, tally)
    _finish(session, settings, now, tally)
    return JobResult.of("digest", tally)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Session, Settings, datetime], JobResult]
    cron_setting: str
    description: str


JOBS: dict[str, Job] = {j.name: j for j in (
    Job("scan", scan_and_alert, "scan_cron", "incremental scan and new-flag alerts to auditors"),
    Job("stock", stock_alerts, "stock_cron", "stockouts, low stock, expiring lots, short counts to managers"),
    Job("verify", verify_ledger, "verify_cron", "hash chains and balance drift to admins and auditors"),
    Job("digest", weekly_digest, "digest_cron", "weekly digest of alerts held for it"),
    Job("dhis2", push_job, "dhis2_cron", "last month's figures to the DHIS2 server, its import summary kept"),
)}
