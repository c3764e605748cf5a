"""``taskchan.layers.RedisChannelLayer``: channels_redis with reliable ``taskchan.*`` channels.

Imported on first use through ``taskchan.layers`` (see there why).
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

from .conf import settings
from .layers import TaskchanLayerMixin
from .stores.redis import shared_store, store_host


class RedisChannelLayer(TaskchanLayerMixin, ChannelsRedisLayer):
    """channels_redis, with ``taskchan.*`` channels on Redis Streams.

    The reliable store uses the first of ``hosts`` unless CONFIG gives
    ``taskchan_host``; its keys start with TASKCHAN_KEY_PREFIX (or CONFIG's
    ``taskchan_prefix``).
    """

    def __init__(self, hosts=None, *args, taskchan_host=None, taskchan_prefix=None, **kwargs):
        super().__init__(hosts, *args, **kwargs)
        self.taskchan_store = shared_store(store_host(hosts, taskchan_host), taskchan_prefix or settings.KEY_PREFIX)


# Its documented path: settings name it "taskchan.layers.RedisChannelLayer".
RedisChannelLayer.__module__ = "taskchan.layers"
