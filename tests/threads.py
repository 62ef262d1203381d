"""Running one function in many threads at once, for the tests of concurrent writers."""

from __future__ import annotations

import threading


def run_threads(target, n: int, timeout: float = 60) -> None:
    """Call ``target(i)`` for i in 0..n-1, each in its own thread, and wait for all of them. An
    exception in any thread is raised here; a thread still running after ``timeout`` seconds
    fails the test (a deadlock, or a writer starved)."""
    errors: list[BaseException] = []

    def guarded(i):
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "threads still running: deadlock or starvation"
    if errors:
        raise errors[0]
