"""Request-scoped dependencies: a database session per request, and the settings.

The route is the edge that owns the transaction: it commits what it changed; a session closed
without a commit rolls back. ``read_db`` opens a read-only session (on SQLite it never takes the
write lock, so pages and reports do not hold up dispensing).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from stock.settings import Settings


def db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def read_db(request: Request) -> Iterator[Session]:
    with request.app.state.read_sessions() as session:
        yield session


async def settings(request: Request) -> Settings:
    return request.app.state.settings


__all__ = ["db", "read_db", "settings"]
