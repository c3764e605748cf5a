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
        """``channels`` of partition ``index`` minus those set aside."""
        if not self._why:
            return channels
        return [c for c in channels if (index, c) not in self._why]

    async def inspect(self, index: int, store, channels: list[str]) -> bool:
        """After a WRONGTYPE error: find the culprits among ``channels`` and set them aside; whether any were."""
        found = await store.wrong_type_channels(channels)
        for channel, why in found.items():
            self._set_aside(index, channel, why)
        return bool(found)

    async def recheck(self, index: int, store) -> None:
        """Look again at the channels of partition ``index`` whose time has come; bring back the fixed ones."""
        now = self._clock()
        due = [c for (i, c), until in self._until.items() if i == index and until <= now]
        if not due:
            return
        found = await store.wrong_type_channels(due)
        for channel in due:
            if channel in found:
                self._set_aside(index, channel, found[channel])
            else:
                logger.warning("channel %s can be read again", channel)
                for table in (self._until, self._why, self._logged):
                    table.pop((index, channel), None)

    def _set_aside(self, index: int, channel: str, why: str) -> None:
        key, now = (index, channel), self._clock()
        self._until[key] = now + RECHECK_SECONDS
        self._why[key] = why
        if now >= self._logged.get(key, -REPEAT_SECONDS) + REPEAT_SECONDS:
            self._logged[key] = now
            logger.error(
                "channel %s cannot be read: %s. It is not served until that key is deleted or "
                "renamed (checked every %.0f s); the other channels go on",
                channel, why, RECHECK_SECONDS,
            )

    def report(self) -> dict[str, str]:
        """channel -> why it is set aside, for the worker's registry entry."""
        return {channel: why for (_index, channel), why in self._why.items()}
