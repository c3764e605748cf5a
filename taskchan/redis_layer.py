"""``taskchan.layers.RedisChannelLayer``: channels_redis with reliable ``taskchan.*`` channels.

Imported on first use through ``taskchan.layers`` (see there why).
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

from .layers import TaskchanLayerMixin, redis_store


class RedisChannelLayer(TaskchanLayerMixin, ChannelsRedisLayer):
    """channels_redis, with ``taskchan.*`` channels on Redis Streams.

    The reliable store shards taskchan channels over ``hosts`` unless CONFIG
    gives ``taskchan_hosts`` (a list) or ``taskchan_host`` (one Redis); its
    keys start with TASKCHAN_KEY_PREFIX (or CONFIG's ``taskchan_prefix``).
    """

    def __init__(
        self, hosts=None, *args, taskchan_host=None, taskchan_hosts=None, taskchan_prefix=None,
        taskchan_drain_hosts=None, **kwargs,
    ):
        super().__init__(hosts, *args, **kwargs)
        self.taskchan_store = redis_store(
            hosts, taskchan_host, taskchan_hosts, taskchan_prefix, taskchan_drain_hosts
        )

    def consistent_hash(self, value):
        # channels_redis 4.x picks the host of a process-specific channel
        # ("specific.abc!xyz") from the whole name when sending, but from the
        # name up to "!" when receiving, so with several hosts a reply to a
        # websocket consumer's channel can land on a host nobody reads
        # (django/channels#1492).  Hashing the part up to "!" in both places
        # sends it where receive() looks; with one host nothing changes.
        if isinstance(value, str) and "!" in value:
            value = value[: value.index("!") + 1]
        return super().consistent_hash(value)


# Its documented path: settings name it "taskchan.layers.RedisChannelLayer".
RedisChannelLayer.__module__ = "taskchan.layers"
