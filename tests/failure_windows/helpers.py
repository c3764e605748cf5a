"""Helpers for the failure-window tests: Redis state, counting, subprocesses."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from taskchan.envelope import decode
from taskchan.stores.keys import GROUP
from tests.conftest import KEYS, Process, wait_for

# -- progress of a long run ------------------------------------------------------

# The soaks run one after another on one pytest-xdist worker (``make test`` runs
# ``--dist loadgroup``): side by side, each one's workers and Redis servers took
# the CPU the others' needed, and a slower soak got killed more often, which made
# it slower still.
SOAK_GROUP = pytest.mark.xdist_group("soaks")

# A kill (or a Redis restart) waits for this share of the jobs to be done since the
# last one: at most 25 per soak, however slow the machine.
KILL_EVERY_SHARE = 1 / 25


class Progress:
    """How many records a long run has made, failing it once none came for ``stall_after`` s.

    A stall, not a deadline for the whole run: a deadline fails a slow machine,
    not a bug.  ``since(mark)`` is what was done after an earlier ``seen``, so a
    soak can wait for work between two kills.
    """

    def __init__(self, count, stall_after: float = 90):
        self.count, self.stall_after = count, stall_after
        self.seen, self.at = 0, time.monotonic()

    def check(self, what: str) -> int:
        """Read the count; fail, saying ``what`` ran, if it has not moved for ``stall_after`` s."""
        if (done := self.count()) > self.seen:
            self.seen, self.at = done, time.monotonic()
        assert time.monotonic() - self.at < self.stall_after, f"{what} stalled for {self.stall_after:.0f} s at {self.seen} records"
        return self.seen

    def since(self, mark: int) -> int:
        return self.seen - mark


# -- Redis state ---------------------------------------------------------------


def stream_key(channel: str) -> str:
    return KEYS.stream(channel)


def scheduled_key(channel: str) -> str:
    return KEYS.scheduled(channel)


def pending(client, channel: str, keys=KEYS) -> list[dict]:
    """The consumer group's pending list (the lease table) for ``channel`` (``keys``: ClusterKeys on a cluster)."""
    try:
        return client.xpending_range(keys.stream(channel), GROUP, min="-", max="+", count=10_000)
    except redis.ResponseError:  # no stream or group yet
        return []


def wait_drained(clients, channels, timeout: float = 60, keys=KEYS) -> None:
    """Wait until no stream of ``channels`` on any of ``clients`` holds an entry or a lease.

    Every job recorded is not yet every entry acked: a SIGKILLed worker's
    finished but unacked entries stay leased to it until a survivor reclaims
    them (and runs them again: the duplicates).  Stopping the survivors first
    would leave them for the next worker, which is right, but not what the
    soak's final count checks.
    """
    wait_for(
        lambda: all(not pending(c, ch, keys) and c.xlen(keys.stream(ch)) == 0 for c in clients for ch in channels),
        timeout=timeout, message="every stream drained and acked",
    )


def stream_envelopes(client, channel: str) -> list:
    """Decode every entry of the channel's stream; fails the test on a half-written one."""
    out = []
    for entry_id, fields in client.xrange(stream_key(channel)):
        assert set(fields) == {"m"}, f"entry {entry_id} has fields {fields!r}"
        out.append(decode(fields["m"], channel))
    return out


def blocked_clients(client, command: str | None = None) -> list[dict]:
    """Clients Redis holds blocked (e.g. by CLIENT PAUSE), optionally only those running ``command``."""
    return [
        c
        for c in client.client_list()
        if "b" in c["flags"] and (command is None or c["cmd"].split("|")[0] == command)
    ]


def wait_unblocked(client, message: str, timeout: float = 10) -> None:
    """Wait until Redis holds no client blocked (a held command ran, or its client is gone)."""
    wait_for(lambda: not blocked_clients(client), timeout=timeout, message=message)


@contextlib.contextmanager
def writes_paused(client, ms: int = 10_000):
    """``CLIENT PAUSE ms WRITE`` for the block: every write is held in Redis; UNPAUSE after."""
    client.execute_command("CLIENT", "PAUSE", ms, "WRITE")
    try:
        yield
    finally:
        client.execute_command("CLIENT", "UNPAUSE")


def counts(records) -> Counter:
    """message id -> number of records (from ``done_records``)."""
    return Counter(r[0] for r in records)


# -- processes -----------------------------------------------------------------


class Script(Process):
    """``python -m MODULE ARGS`` with the test's Redis and database, output under test-artifacts/."""

    def __init__(self, module: str, args, env: dict, name: str):
        super().__init__([sys.executable, "-m", module, *args], env, name)


def read_ids(path: Path) -> list[str]:
    """Complete lines of an id file a producer wrote (a torn last line is not an id it reported)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    return [line for line in lines[:-1] if line and not line.startswith("ERR")]


def wait_exit(proc, timeout: float = 60.0) -> int:
    """Wait for a worker subprocess to exit; fail with its output if it does not."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"worker did not exit within {timeout}s:\n{proc.output()[-4000:]}"
        ) from None


__all__ = [
    "Script",
    "blocked_clients",
    "counts",
    "pending",
    "read_ids",
    "scheduled_key",
    "stream_envelopes",
    "stream_key",
    "wait_exit",
    "wait_for",
]
