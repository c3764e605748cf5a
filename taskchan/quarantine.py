"""Channels a worker cannot read for now: one bad key stops its own channel only.

A worker reads every channel of a Redis host with one XREADGROUP and keeps
each host's channels up to date with pipelines, so a single key of the wrong
type (``SET taskchan:q:taskchan.x ...`` by hand, a bug in other code) would
fail every call and stop every channel on that host.  When a call fails with
WRONGTYPE the worker asks the store which channels' keys are wrong
(``StoreBase.wrong_type_channels``) and sets those aside: an error naming the
channel and its key is logged, the channel is left out of every read and
upkeep step, and it is looked at again every ``RECHECK_SECONDS``.  The other
channels go on.  A worker lists the channels it set aside in its registry
entry, so ``taskchan_status`` and the overview show them.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("taskchan.worker")

#: seconds before a channel set aside is tried again
RECHECK_SECONDS = 30.0
#: seconds between repeats of the error while a channel stays unreadable
REPEAT_SECONDS = 600.0


def is_wrong_type(exc: BaseException) -> bool:
    return "WRONGTYPE" in str(exc)


class Quarantine:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._until: dict[tuple[int, str], float] = {}  # (partition, channel) -> recheck time
        self._why: dict[tuple[int, str], str] = {}
        self._logged: dict[tuple[int, str], float] = {}  # when the error was last logged

    def usable(self, index: int, channels: list[str]) -> list[str]:
        """``channels`` of partition ``index`` minus those set aside (which come back when due)."""
        if not self._until:
            return channels
        now = self._clock()
        return [c for c in channels if self._until.get((index, c), 0.0) <= now]

    async def inspect(self, index: int, store, channels: list[str], what: str, exc: BaseException) -> None:
        """After a WRONGTYPE error from ``what``: find the culprits among ``channels`` and set them aside."""
        found = await store.wrong_type_channels(channels)
        if not found:
            logger.error("%s on %r failed: %s (no channel key has a wrong type: another key?)", what, store, exc)
            return
        now = self._clock()
        for channel, why in found.items():
            key = (index, channel)
            self._until[key] = now + RECHECK_SECONDS
            self._why[key] = why
            if now >= self._logged.get(key, -REPEAT_SECONDS) + REPEAT_SECONDS:
                self._logged[key] = now
                logger.error(
                    "channel %s cannot be read: %s. It is not served until that key is deleted or "
                    "renamed (checked every %.0f s); the other channels go on",
                    channel, why, RECHECK_SECONDS,
                )

    def cleared(self, index: int, channels: list[str]) -> None:
        """A call over ``channels`` worked: those set aside among them are readable again."""
        for channel in channels:
            key = (index, channel)
            if key in self._why and self._until[key] <= self._clock():
                logger.warning("channel %s can be read again", channel)
                for table in (self._until, self._why, self._logged):
                    table.pop(key, None)

    def report(self) -> dict[str, str]:
        """channel -> why it is set aside, for the worker's registry entry."""
        return {channel: why for (_index, channel), why in self._why.items()}
