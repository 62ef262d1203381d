"""Request-scoped dependencies: a database session per request, and the settings.

The route is the edge that owns the transaction: it commits what it changed; a session closed
without a commit rolls back. ``read_db`` opens a read-only session (on SQLite it never takes the
write lock, so pages and reports do not hold up dispensing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from stock.settings import Settings


async def db(request: Request) -> AsyncIterator[Session]:
    session = request.app.state.sessions()
    try:
        yield session
    finally:
        await _close(session)


async def read_db(request: Request) -> AsyncIterator[Session]:
    session = request.app.state.read_sessions()
    try:
        yield session
    finally:
        await _close(session)


async def _close(session: Session) -> None:
    """Close a request's session. Dependencies are async so that a request makes no extra trips to
    a worker thread: making a session reads nothing, and closing one whose route committed gives
    back no connection. A session still in a transaction (a read, or a route that failed) is closed
    in a worker thread, since its rollback talks to the database."""
    if session.in_transaction():
        await run_in_threadpool(session.close)
    else:
        session.close()


async def settings(request: Request) -> Settings:
    return request.app.state.settings


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form's text fields, read on the event loop. A route that takes its form this way
    can be a plain function, which FastAPI runs in a worker thread: a route that works with the
    database must never run on the event loop, where a wait for the write lock would hold up
    every other request."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def body(request: Request) -> bytes:
    """The request's raw body, read on the event loop (see ``form_fields``)."""
    return await request.body()


__all__ = ["db", "read_db", "settings", "form_fields", "body"]
