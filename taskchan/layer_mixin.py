"""What taskchan adds to a Channels layer: ``taskchan.*`` channels go to the reliable store.

Mixed into both layer classes (``taskchan/layers.py``, ``taskchan/redis_layer.py``).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from .envelope import validate_channel
from .exceptions import InvalidChannelName, StoreUnavailable, TaskchanError
from .producer import asend
from .stores.base import ProducerStore

TASKCHAN_PREFIX = "taskchan."

logger = logging.getLogger("taskchan.layers")


#: the group whose group_send is sending (in-memory layer: channels' group_send
#: calls send() once per member, in tasks that inherit this)
sending_to_group: ContextVar[str | None] = ContextVar("taskchan_sending_to_group", default=None)


def is_taskchan(channel) -> bool:
    return isinstance(channel, str) and channel.startswith(TASKCHAN_PREFIX)


class TaskchanLayerMixin:
    taskchan_store: ProducerStore

    async def send(self, channel, message):
        if not is_taskchan(channel):
            await super().send(channel, message)
        elif (group := sending_to_group.get()) is not None:
            await self.store_group_jobs(group, [channel], message)
        else:
            await asend(channel, message, store=self.taskchan_store)

    async def store_group_jobs(self, group: str, channels: list[str], message: dict) -> None:
        """A group_send's message, stored as a job on each of the group's ``taskchan.*`` members.

        Each is validated as ``send()`` validates.  One that is refused is
        reported as Channels' group_send reports a member it cannot deliver to
        (channels_redis logs a full channel; the in-memory layer skips it):
        in the log, without an exception, and the other members still get the
        message.  A store that does not answer is raised once every member
        was tried, as channels_redis raises a Redis that does not answer.
        """
        unavailable = None
        for channel in channels:
            try:
                await asend(channel, message, store=self.taskchan_store)
            except StoreUnavailable as exc:
                logger.error("group_send(%r): could not store a job for %s: %s", group, channel, exc)
                unavailable = unavailable or exc
            except (ValueError, TypeError) as exc:  # what send() refuses at the door
                logger.error("group_send(%r): %s refused the message as a job: %s", group, channel, exc)
        if unavailable is not None:
            raise unavailable

    async def receive(self, channel):
        if is_taskchan(channel):
            raise TaskchanError(
                f"{channel!r} is a taskchan channel: its messages are consumed by "
                "'python manage.py runworker', which acknowledges them; receive() would lose that."
            )
        return await super().receive(channel)

    async def new_channel(self, *args, **kwargs):
        prefix = args[0] if args else kwargs.get("prefix", "")
        if is_taskchan(f"{prefix}."):
            raise InvalidChannelName(
                f"new_channel(prefix={prefix!r}) would name a process-specific channel ('...!...') "
                "under 'taskchan.', which nothing could send to or receive from: taskchan channels "
                "are named ones that runworker consumes ('taskchan.thumbnails'). Give new_channel() "
                "a prefix outside 'taskchan.' for a reply channel."
            )
        return await super().new_channel(*args, **kwargs)

    async def group_add(self, group, channel):
        if is_taskchan(channel):
            validate_channel(channel)  # a name no job could be stored for is refused here, not at each send
        await super().group_add(group, channel)

    async def flush(self):
        """Channels' flush, and every taskchan channel's messages too (see docs/migrating.md)."""
        await super().flush()
        await self.taskchan_store.flush()
        await self.taskchan_store.aclose()
