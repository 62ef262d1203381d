"""Who may see and do what: the one place access is decided.

Default deny. Every route depends on ``current_user`` (directly or through ``require_roles``)
unless it is one of the few public ones (PUBLIC_PATHS); a test walks ``app.routes`` to hold that.
A user's scope is one facility, one region, or national (both empty); what lies outside it is
refused whatever the role. Templates and queries never decide access themselves: they are given
what the rules here allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.masterdata import facility_by_code
from stock.models import ROLES, Facility, User
from web.words import NATIONAL_DATA, ROLE, Term

PUBLIC_PATHS = ("/login", "/healthz", "/language", "/api/docs", "/api/docs/init.js", "/api/openapi.json")
"""Routes anyone may reach (/language only sets the language of the login page for someone not
logged in). The mounts /static and /api/docs/assets are public as well. Everything else needs a user."""


# Who may do what, named once; pages, the API and the CLI depend on these names.
STAFF = ("pharmacist", "facility_manager", "admin")
"""Record movements at a facility's counter and store (dispense, receive, transfer, count, loss)."""
MANAGERS = ("facility_manager", "admin")
"""Run a facility's stock: levels, orders, reports."""
REVIEWERS = ("auditor", "admin")
"""Review flags and cases, take verdicts, read patients' dispensings and the audit trail."""
ADMINS = ("admin",)
"""Manage users, facilities and master data."""
FACILITY_BOUND = ("pharmacist",)
"""Roles whose scope must be one facility (an account of theirs names it)."""

# Who is told what by the scheduled jobs (web.alerts.jobs), and how.
STOCK_ALERTED = ("facility_manager",)
"""Told of their facility's stock: stock-outs, low stock, expiring lots, count shortfalls."""
FLAG_ALERTED = ("auditor",)
"""Told of new flags and of witnessed ledger heads."""
LEDGER_ALERTED = ("admin", "auditor")
"""Told when the ledger, a balance or the audit chain does not verify."""
DIGEST_BY_DEFAULT = ("auditor",)
"""Roles whose e-mail and webhook preferences are a digest unless they choose otherwise: an auditor
works the flag queue, and a message per scan run would be noise."""

MSG_NEEDS_ROLE = "this needs the role %(roles)s; you are %(role)s"
MSG_FACILITY_OUTSIDE = "facility %(facility)s is outside your scope"
MSG_NATIONAL_ONLY = "only a national user may change %(what)s"
MSG_UNKNOWN_FACILITY = "unknown facility '%(facility)s'"
MSG_UNKNOWN_ITEM = "unknown item '%(item)s'"
MSG_NOT_YOUR_STEP = "requisitions of %(facility)s to %(supplier)s: this step is not yours to take"


class AccessError(Exception):
    """Refused access; the app turns it into a redirect, a page or a JSON error body.

    ``message`` is a msgid of the catalog (the refusal's English words, as the API answers them);
    with ``params`` it holds ``%(name)s`` placeholders, each filled with a value, or with a
    ``web.words.Term`` (a role, a facility kind...) named in the reader's language by
    :meth:`in_language`, as the pages show it.
    """

    status_code = 403

    def __init__(self, message: str, field: str | None = None, *, params: dict | None = None):
        from web import words

        self.key, self.params = message, dict(params or {})
        message = words.render_message("en", message, self.params) if params else message
        super().__init__(message)
        self.message = message
        self.field = field

    def in_language(self, lang: str) -> str:
        """The refusal in ``lang``: roles and other enum values named in it, other values isolated for
        bidi in a right-to-left language."""
        from web import words

        return words.render_message(lang, self.key, self.params, isolate=True)


def needs_role(roles, user: User) -> dict:
    """The parameters of MSG_NEEDS_ROLE: the roles that may, the role the user has."""
    return {"roles": tuple(Term(ROLE, r) for r in roles), "role": Term(ROLE, user.role)}


class NotAuthenticated(AccessError):
    status_code = 401


class Forbidden(AccessError):
    status_code = 403


class NotFound(AccessError):
    status_code = 404


async def current_user(request: Request) -> User:
    """The logged-in user (by session cookie, or by personal token on the API), or 401/redirect.
    (async: it only reads what the middleware found, so it needs no worker thread.)"""
    user = getattr(request.state, "user", None)
    if user is None:
        raise NotAuthenticated("log in first")
    return user


def require_roles(*roles: str) -> Callable[..., User]:
    """A dependency letting through only users with one of ``roles``."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")

    async def dependency(user: User = Depends(current_user)) -> User:
        if user.role not in roles:
            raise Forbidden(MSG_NEEDS_ROLE, params=needs_role(roles, user))
        return user

    dependency.__name__ = f"require_{'_or_'.join(roles)}"
    return dependency


@dataclass(frozen=True)
class Scope:
    kind: str  # "facility", "region" or "national"
    facility_id: int | None = None
    region: str | None = None

    def allows(self, facility: Facility) -> bool:
        if self.kind == "national":
            return True
        if self.kind == "region":
            return facility.region == self.region
        return facility.id == self.facility_id


def scope_of(user: User) -> Scope:
    if user.facility_id is not None:
        return Scope("facility", facility_id=user.facility_id)
    if user.region:
        return Scope("region", region=user.region)
    return Scope("national")


def visible_facility_ids(session: Session, user: User) -> list[int]:
    """Ids of the facilities ``user`` may see, in id order (none for no one)."""
    scope = scope_of(user)
    if scope.kind == "facility":
        return [scope.facility_id]
    stmt = select(Facility.id).order_by(Facility.id)
    if scope.kind == "region":
        stmt = stmt.where(Facility.region == scope.region)
    return list(session.scalars(stmt))


def visible_facilities(session: Session, user: User) -> list[Facility]:
    scope = scope_of(user)
    stmt = select(Facility).order_by(Facility.code)
    if scope.kind == "facility":
        stmt = stmt.where(Facility.id == scope.facility_id)
    elif scope.kind == "region":
        stmt = stmt.where(Facility.region == scope.region)
    return list(session.scalars(stmt))


def require_facility(user: User, facility: Facility | None) -> Facility:
    """``facility`` if it is in ``user``'s scope: 404 if there is none, 403 if it is not theirs."""
    if facility is None:
        raise NotFound("no such facility", field="facility")
    if not scope_of(user).allows(facility):
        raise Forbidden(MSG_FACILITY_OUTSIDE, field="facility", params={"facility": facility.code})
    return facility


def within_scope(session: Session, actor: User, target: User) -> bool:
    """Whether ``target``'s whole scope lies inside ``actor``'s: a national user covers everyone, a
    regional one the users of their region (its facilities' and the region's own), a facility's
    only the users of that facility. A national user is in no one's scope but a national user's."""
    scope = scope_of(actor)
    if scope.kind == "national":
        return True
    if target.facility_id is not None:
        facility = session.get(Facility, target.facility_id)
        return facility is not None and scope.allows(facility)
    return scope.kind == "region" and target.region == scope.region


def visible_users(session: Session, actor: User) -> list[User]:
    """The users ``actor`` may see and act on, by user name (see ``within_scope``)."""
    scope = scope_of(actor)
    stmt = select(User).order_by(User.username)
    if scope.kind == "facility":
        stmt = stmt.where(User.facility_id == scope.facility_id)
    elif scope.kind == "region":
        in_region = select(Facility.id).where(Facility.region == scope.region)
        stmt = stmt.where(User.facility_id.in_(in_region) | (User.facility_id.is_(None) & (User.region == scope.region)))
    return list(session.scalars(stmt))


def user_in_scope(session: Session, actor: User, username: str, *, for_update: bool = False) -> User:
    """The user named ``username`` if ``actor`` may act on them; one outside the scope is refused
    exactly like one that does not exist (404), so the answer tells nothing about who exists."""
    stmt = select(User).where(User.username == username)
    if for_update:
        stmt = stmt.with_for_update()
    target = session.scalars(stmt).one_or_none()
    if target is None or not within_scope(session, actor, target):
        raise NotFound("no such user", field="username")
    return target


def require_national(user: User, what: str = "national master data") -> User:
    """Refuse (403) anyone but a national user: items and their ceilings hold for every facility."""
    if scope_of(user).kind != "national":
        raise Forbidden(MSG_NATIONAL_ONLY, params={"what": Term(NATIONAL_DATA, what)})
    return user


HEALTH_CARD_EXPORTERS = ("pharmacist", "facility_manager")
"""Roles that hand a patient's care to another clinical system and may need the health card
itself in a FHIR export; an install lets them ask for it by naming them in
``DAWA_FHIR__HEALTH_CARD_ROLES``. Auditors and admins review and manage: pseudonyms serve them."""


def require_health_card_export(user: User, allowed_roles) -> User:
    """Refuse (403) a FHIR export of health cards in the clear unless the install allows the
    user's role (``allowed_roles``, from the settings) and the role is one that may need them.
    Everyone else gets patients by pseudonym."""
    if user.role not in HEALTH_CARD_EXPORTERS or user.role not in allowed_roles:
        raise Forbidden("patients are exported by pseudonym: your role may not export health cards",
                        field="patient_ids")
    return user


def may_see_dhis2_pushes(user: User | None) -> bool:
    """The DHIS2 push history is for national admins and facility managers only: a push sends
    every mapped facility's figures, and DHIS2's conflicts name any of them."""
    return user is not None and user.role in ("admin", "facility_manager") and scope_of(user).kind == "national"


def require_dhis2_pushes(user: User = Depends(current_user)) -> User:
    """Refuse (403) the DHIS2 push history to anyone ``may_see_dhis2_pushes`` leaves out."""
    if not may_see_dhis2_pushes(user):
        raise Forbidden("only a national admin or manager may see what was sent to DHIS2")
    return user


@dataclass(frozen=True)
class RecordScope:
    """Which audit records a user may read: those of ``facility_ids`` (None: every facility), and
    records tied to no facility (logins, user changes, ledger verification) when ``include_unplaced``."""

    facility_ids: list[int] | None
    include_unplaced: bool


CLEAR_CARD_ROLES = ("auditor", "admin")
"""Who may take health cards in clear out of Dawa (a case handed to investigators, a copy of the
whole database restored elsewhere): national auditors and admins, by name, each time audited.
Everyone else's exports name patients by pseudonym."""


def clear_card_export_refusal(user: User | None) -> str | None:
    """Why ``user`` may not export health cards in clear (None: they may)."""
    if user is None or not user.active:
        return "no such active user"
    if user.role not in CLEAR_CARD_ROLES or scope_of(user).kind != "national":
        return (f"exporting health cards in clear needs a national {' or '.join(CLEAR_CARD_ROLES)}; "
                f"{user.username} is a {scope_of(user).kind} {user.role}")
    return None


def audit_scope(session: Session, user: User, facility: str | None = None) -> RecordScope:
    """The audit records ``user`` may read, the API's and the pages' alike.

    A national user reads every record. Anyone else reads the records of facilities in their scope
    only, never those tied to no facility: a login or a user change is not about one place, so it
    is not theirs to see. Narrowed to one ``facility`` (by code) it is that facility's records, if
    the facility is in scope (404 unknown, 403 outside).
    """
    if facility:
        return RecordScope([facility_in_scope(session, user, facility).id], include_unplaced=False)
    if scope_of(user).kind == "national":
        return RecordScope(None, include_unplaced=True)
    return RecordScope(visible_facility_ids(session, user), include_unplaced=False)


def facility_in_scope(session: Session, user: User, code: str) -> Facility:
    """The facility with ``code``, if ``user`` may see it (404 unknown, 403 outside scope)."""
    from stock.errors import UnknownFacility

    try:
        facility = facility_by_code(session, code)
    except UnknownFacility:
        raise NotFound(MSG_UNKNOWN_FACILITY, field="facility", params={"facility": code}) from None
    return require_facility(user, facility)


# --- requisitions -----------------------------------------------------------------------------

REQUESTERS = ("pharmacist", "facility_manager", "admin")
"""Who prepares, changes, submits and receives a facility's requisitions, and ships a store's."""
APPROVERS = ("facility_manager", "admin")
"""Who approves, cuts or rejects requisitions: the supplying store's managers, or the region's."""
REQUISITION_STEPS = {"prepare": REQUESTERS, "change": REQUESTERS, "submit": REQUESTERS, "receive": REQUESTERS,
                     "approve": APPROVERS, "reject": APPROVERS, "fulfil": REQUESTERS}


def may_see_requisition(user: User, facility: Facility, supplier: Facility) -> bool:
    """Anyone whose scope holds the requesting facility or its supplying store."""
    scope = scope_of(user)
    return scope.allows(facility) or scope.allows(supplier)


def require_requisition_step(user: User, step: str, facility: Facility, supplier: Facility) -> None:
    """Refuse ``step`` on a requisition of ``facility`` to ``supplier`` unless the rules allow it.

    The requesting facility's staff prepare, change, submit and receive; the supplying store's staff
    ship. Approval belongs to the managers of the supplying store or of the requesting facility's
    region, never to the facility approving its own request. A requisition the user may not see
    is not found (its existence is not theirs to know).
    """
    if not may_see_requisition(user, facility, supplier):
        raise NotFound("no such requisition", field="requisition")
    roles = REQUISITION_STEPS[step]
    if user.role not in roles:
        raise Forbidden(MSG_NEEDS_ROLE, params=needs_role(roles, user))
    scope = scope_of(user)
    if step in ("approve", "reject"):
        allowed = scope.allows(supplier) or (scope.kind == "region" and scope.allows(facility))
        allowed = allowed and not (scope.kind == "facility" and scope.facility_id == facility.id)
    elif step == "fulfil":
        allowed = scope.allows(supplier)
    else:
        allowed = scope.allows(facility)
    if not allowed:
        raise Forbidden(MSG_NOT_YOUR_STEP, params={"facility": facility.code, "supplier": supplier.code})


REVERSAL_WINDOWS = {"pharmacist": timedelta(hours=24), "facility_manager": timedelta(days=30)}
"""Who may reverse a ledger entry, and how long after it was recorded: a pharmacist their own
entries, a facility manager any entry of a facility in their scope. Nobody else reverses; the
reason a reversal needs is the ledger's rule (stock.rules)."""

MSG_REVERSE_ROLE = "Your role does not reverse entries."
MSG_REVERSE_OUT_OF_SCOPE = "Entry %(entry)s is not one you may reverse."
MSG_REVERSE_NOT_YOURS = "Entry %(entry)s was recorded by someone else: you may reverse only your own entries."
MSG_REVERSE_TOO_OLD_HOURS = ("Entry %(entry)s was recorded more than %(hours)s hours ago: ask a facility manager "
                             "to reverse it.")
MSG_REVERSE_TOO_OLD_DAYS = ("Entry %(entry)s was recorded more than %(days)s days ago: it can no longer be "
                            "reversed; record an adjustment with the reason instead.")


@dataclass(frozen=True)
class Refusal:
    """Why access is refused, as an English template (an ``MSG_`` constant) and its values, for
    the API to say as is and a page to translate."""

    template: str
    params: dict

    @property
    def message(self) -> str:
        return self.template % self.params


def reversal_refusal(user: User, *, entry_id: str, facility: Facility, recorded_by: str,
                     recorded_at: datetime, now: datetime) -> Refusal | None:
    """Why ``user`` may not reverse the entry ``entry_id`` of ``facility``, recorded by
    ``recorded_by`` at ``recorded_at``; None when they may. The pages and the API both ask here."""
    window = REVERSAL_WINDOWS.get(user.role)
    if window is None:
        return Refusal(MSG_REVERSE_ROLE, {})
    if not scope_of(user).allows(facility):
        return Refusal(MSG_REVERSE_OUT_OF_SCOPE, {"entry": entry_id})
    if user.role == "pharmacist" and recorded_by != user.username:
        return Refusal(MSG_REVERSE_NOT_YOURS, {"entry": entry_id})
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=now.tzinfo)
    if now - recorded_at > window:
        if window < timedelta(days=2):
            return Refusal(MSG_REVERSE_TOO_OLD_HOURS, {"entry": entry_id, "hours": int(window.total_seconds() // 3600)})
        return Refusal(MSG_REVERSE_TOO_OLD_DAYS, {"entry": entry_id, "days": window.days})
    return None


__all__ = ["CLEAR_CARD_ROLES", "clear_card_export_refusal", "REVERSAL_WINDOWS", "Refusal", "reversal_refusal", "PUBLIC_PATHS", "AccessError", "NotAuthenticated", "Forbidden", "NotFound", "current_user",
           "require_roles", "Scope", "scope_of", "visible_facility_ids", "visible_facilities",
           "require_facility", "facility_in_scope", "RecordScope", "audit_scope", "within_scope", "visible_users",
           "user_in_scope", "require_national", "REQUESTERS", "APPROVERS",
           "REQUISITION_STEPS", "may_see_requisition", "require_requisition_step"]
