"""``taskchan.layers.RedisChannelLayer``: channels_redis with reliable ``taskchan.*`` channels.

Imported on first use through ``taskchan.layers`` (see there why).
"""

from __future__ import annotations

from contextvars import ContextVar

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

from .layer_mixin import TaskchanLayerMixin, is_taskchan
from .stores.configured import redis_store

#: the taskchan members group_send found, collected while channels_redis's
#: group_send runs (see _map_channel_keys_to_connection)
_taskchan_members: ContextVar[list[str] | None] = ContextVar("taskchan_group_members", default=None)


class RedisChannelLayer(TaskchanLayerMixin, ChannelsRedisLayer):
    """channels_redis, with ``taskchan.*`` channels on Redis Streams.

    The reliable store shards taskchan channels over ``hosts`` unless CONFIG
    gives ``taskchan_hosts`` (a list), ``taskchan_host`` (one Redis) or
    ``taskchan_cluster`` (a Redis Cluster: ``stores/cluster.py``); its
    keys start with TASKCHAN_KEY_PREFIX (or CONFIG's ``taskchan_prefix``).
    """

    def __init__(
        self, hosts=None, *args, taskchan_host=None, taskchan_hosts=None, taskchan_prefix=None,
        taskchan_drain_hosts=None, taskchan_cluster=None, **kwargs,
    ):
        super().__init__(idle_safe_hosts(hosts), *args, **kwargs)
        # channels_redis's own keys seal taskchan's store too (stores/codec.py);
        # it is channels_redis's seventh parameter when given by position.
        keys = kwargs.get("symmetric_encryption_keys", args[5] if len(args) > 5 else None)
        self.taskchan_store = redis_store(
            hosts, taskchan_host, taskchan_hosts, taskchan_prefix, taskchan_drain_hosts, keys, taskchan_cluster
        )

    async def group_send(self, group, message):
        jobs: list[str] = []
        token = _taskchan_members.set(jobs)
        try:
            await super().group_send(group, message)  # every other member, as channels_redis does
        finally:
            _taskchan_members.reset(token)
        await self.store_group_jobs(group, jobs, message)

    def _map_channel_keys_to_connection(self, channel_names, message):
        # channels_redis's group_send writes the message straight into a key
        # of its own for each member (its group_send never calls send()), and
        # this is the one place it hands over the member list.  A taskchan
        # member's message belongs in the reliable store instead, or no
        # worker would ever see it: taken out here, stored by group_send.
        jobs = _taskchan_members.get()
        others = []
        for name in channel_names:
            if not is_taskchan(name):
                others.append(name)
            elif jobs is not None:
                jobs.append(name)
        return super()._map_channel_keys_to_connection(others, message)

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


#: socket timeout (seconds) of channels_redis's own connections unless a host sets one.
#: Its receive() blocks in Redis for ``brpop_timeout`` (5 s) and redis-py 8 gives up
#: reading after 5 s by default: the two met, and an idle websocket or plain-channel
#: worker died with "Timeout reading from ..." within seconds.  Waiting longer than
#: the blocking read keeps them up however long they idle; a frozen host still fails.
LAYER_SOCKET_TIMEOUT = 15.0


def idle_safe_hosts(hosts):
    """channels_redis ``hosts`` with ``socket_timeout`` set (LAYER_SOCKET_TIMEOUT) where a host gives none."""
    if not hosts:
        hosts = ["redis://localhost:6379"]  # channels_redis's default
    if not isinstance(hosts, (list, tuple)):
        return hosts  # a mistake channels_redis reports itself
    safe = []
    for host in hosts:
        if isinstance(host, dict):
            entry = dict(host)
        elif isinstance(host, (tuple, list)):
            entry = {"host": host[0], "port": host[1]}
        else:
            entry = {"address": host}
        entry.setdefault("socket_timeout", LAYER_SOCKET_TIMEOUT)
        safe.append(entry)
    return safe


# Its documented path: settings name it "taskchan.layers.RedisChannelLayer".
RedisChannelLayer.__module__ = "taskchan.layers"
