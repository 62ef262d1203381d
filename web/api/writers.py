"""Group commit: the writes of concurrent API requests run together, in one transaction.

Under load most of what a small write costs is not its own SQL but what surrounds it: a worker
thread, a connection from the pool, BEGIN (on SQLite the write lock), COMMIT (on PostgreSQL a flush
to disk). ``GroupWriter`` queues the requests' jobs on the event loop and hands every job waiting
at that moment to one worker thread, which runs them in one transaction and commits once. Each
request is answered only after the commit that holds its writes, so an acknowledged write is as
durable as before.

What one job does must not depend on sharing the transaction: ``run_group`` runs the jobs in
order and, if any of them fails, rolls the whole group back and runs each job again on its own
(as a request did before), so a refused or failing job answers exactly as it would alone and
never takes the others down.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio


class GroupWriter:
    """Runs queued jobs in groups of up to ``max_group``, ``concurrency`` groups at a time, each
    group in a worker thread through ``run_group(jobs) -> results`` (one result per job: an
    answer, or an exception to raise in the job's request)."""

    def __init__(self, run_group: Callable[[list[Any]], list[Any]], *, concurrency: int = 1,
                 max_group: int = 64):
        self.run_group = run_group
        self.concurrency = concurrency
        self.max_group = max_group
        self.loop = asyncio.get_running_loop()
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self._drainers: set[asyncio.Task] = set()

    async def submit(self, job: Any) -> Any:
        future = self.loop.create_future()
        self._queue.append((job, future))
        if len(self._drainers) < self.concurrency:
            task = self.loop.create_task(self._drain())
            self._drainers.add(task)
            task.add_done_callback(self._drainers.discard)
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    async def _drain(self) -> None:
        while self._queue:
            group = [self._queue.popleft() for _ in range(min(self.max_group, len(self._queue)))]
            try:
                results = await anyio.to_thread.run_sync(self.run_group, [job for job, _ in group])
            except Exception as exc:  # noqa: BLE001 - every waiting request learns of it
                results = [exc] * len(group)
            for (_, future), result in zip(group, results):
                if not future.done():  # its request may have been cancelled meanwhile
                    future.set_result(result)


__all__ = ["GroupWriter"]
