"""Who may use Dawa: creating an account, checked the same way from the admin pages and from
``dawa users create``. The caller owns the transaction and passes the web settings (password hashing).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import InvalidEntry
from stock.masterdata import add_user
from stock.models import LANGUAGES, ROLES, Facility, User
from stock.settings import WebSettings
from web import audit, auth
from web.access import FACILITY_BOUND

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def check_password_strength(password: str, username: str) -> None:
    """The password policy (web.auth.password_problem) as an InvalidEntry."""
    problem = auth.password_problem(password, username)
    if problem:
        raise InvalidEntry(problem, field="password")


def create_user(session: Session, username: str, role: str, password: str, *, web: WebSettings,
                facility: str | None = None, region: str | None = None, display_name: str | None = None,
                language: str | None = None, request=None) -> User:
    """A new active user with a hashed password, checked like the CLI checks it; audited as made
    through the web by the user of ``request`` when given. The caller commits."""
    if not USERNAME_RE.match(username):
        raise InvalidEntry("a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
                           "letter or digit", field="username")
    if role not in ROLES:
        raise InvalidEntry(f"role {role!r} is not one of {', '.join(ROLES)}", field="role")
    if facility and region:
        raise InvalidEntry("give --facility or --region, not both: the scope is one facility, one region, "
                           "or national", field="region")
    if role in FACILITY_BOUND and not facility:
        raise InvalidEntry(f"a {role} works at one facility: give --facility", field="facility")
    if region and session.scalar(select(Facility.id).where(Facility.region == region).limit(1)) is None:
        raise InvalidEntry(f"no facility is in region {region!r}", field="region")
    if language is not None and language not in LANGUAGES:
        raise InvalidEntry(f"language must be one of {', '.join(LANGUAGES)}", field="language")
    if auth.user_by_username(session, username) is not None:
        raise InvalidEntry(f"user {username!r} already exists", field="username")
    check_password_strength(password, username)
    user = add_user(session, username, role, facility_code=facility, region=region, display_name=display_name)
    user.password_hash = auth.hash_password(password, web)
    user.language = language
    session.flush()
    audit.record(session, request, "user_created", "user", username,
                 {"role": role, "facility": facility, "region": region, "via": "web" if request else "cli"},
                 facility_id=user.facility_id)
    return user


__all__ = ["USERNAME_RE", "check_password_strength", "create_user"]
