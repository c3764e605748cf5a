"""A worker never stays up unable to work: a loop or thread that dies ends the process.

A worker is a handful of asyncio loops (fetch, upkeep, acks, maintenance,
async runners) and job threads.  Each catches what it meets per message and
per Redis call; should one die anyway (a bug, a ``SystemExit`` raised by a
consumer), the process would go on heartbeating and renewing leases while
processing nothing: alive, deaf, and never restarted.  So every loop and
thread is watched, and one that ends while the worker is not stopping makes
the process log why and exit at once with ``EXIT_CODE``.  Its supervisor
(systemd, supervisord, Kubernetes) restarts it; the messages it held are
leased, so they lapse and run elsewhere, as after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable

logger = logging.getLogger("taskchan.worker")

#: the worker's exit status when one of its loops or threads died (EX_SOFTWARE)
EXIT_CODE = 70


def exit_process(what: str, exc: BaseException | None) -> None:
    """Log why and end the process now (no cleanup: the leases lapse and the work runs elsewhere)."""
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
    logger.critical(
        "%s died (%s): exiting with status %d so that the supervisor restarts this worker",
        what, reason, EXIT_CODE, exc_info=exc,
    )
    for flushable in (*logging.getLogger().handlers, *logging.getLogger("taskchan").handlers, sys.stdout, sys.stderr):
        try:
            flushable.flush()
        except Exception:  # noqa: S110 - exiting anyway; a closed stream must not stop the exit
            pass
    os._exit(EXIT_CODE)


def watch(task: asyncio.Task, what: str, stopping: Callable[[], bool], on_death) -> asyncio.Task:
    """Call ``on_death(what, exc)`` when ``task`` raises, or returns while not ``stopping()``."""

    def done(task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None and stopping():
            return
        on_death(what, exc)

    task.add_done_callback(done)
    return task


def guarded_thread_target(target: Callable[[], None], what: str, on_death) -> Callable[[], None]:
    """``target`` for a thread: anything it raises (any BaseException) goes to ``on_death``."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # SystemExit from a consumer too: the thread is gone either way
            on_death(what, exc)

    return run
