"""Channel layers whose ``taskchan.*`` channels are reliable.

Each class is the Channels layer a project already uses (channels_redis, or
channels' in-memory layer) with one addition, ``taskchan_store``: the reliable
store that holds every ``taskchan.*`` channel.  Websocket reply channels and
groups behave exactly as before.  ``layer.send("taskchan.x", {...})`` is routed
to the store through the same validation as ``taskchan.send``, so a message
sent around taskchan's API is still delivered reliably (or refused).
"""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

from .conf import settings
from .exceptions import NotATaskchanLayer, TaskchanError
from .stores.base import StoreBase
from .stores.memory import MemoryStore
from .stores.redis import RedisStore

TASKCHAN_PREFIX = "taskchan."


class TaskchanLayerMixin:
    taskchan_store: StoreBase

    async def send(self, channel, message):
        if channel.startswith(TASKCHAN_PREFIX):
            from .producer import asend

            await asend(channel, message, store=self.taskchan_store)
            return
        await super().send(channel, message)

    async def receive(self, channel):
        if channel.startswith(TASKCHAN_PREFIX):
            raise TaskchanError(
                f"{channel!r} is a taskchan channel: its messages are consumed by "
                "'python manage.py runworker', which acknowledges them; receive() would lose that."
            )
        return await super().receive(channel)


class RedisChannelLayer(TaskchanLayerMixin, ChannelsRedisLayer):
    """channels_redis, with ``taskchan.*`` channels on Redis Streams.

    The reliable store uses the first of ``hosts`` unless CONFIG gives
    ``taskchan_host``; its keys start with TASKCHAN_KEY_PREFIX (or CONFIG's
    ``taskchan_prefix``).
    """

    def __init__(self, hosts=None, *args, taskchan_host=None, taskchan_prefix=None, **kwargs):
        super().__init__(hosts, *args, **kwargs)
        host = taskchan_host or (hosts[0] if hosts else "redis://localhost:6379/0")
        self.taskchan_store = RedisStore(host, prefix=taskchan_prefix or settings.KEY_PREFIX)


class InMemoryChannelLayer(TaskchanLayerMixin, ChannelsInMemoryLayer):
    """channels' in-memory layer, with ``taskchan.*`` channels in a MemoryStore.

    Producers and workers must share the process: ``runserver`` runs workers
    in-process when this layer is configured.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.taskchan_store = MemoryStore()


def get_store(alias: str | None = None) -> StoreBase:
    """The reliable store of the configured layer (TASKCHAN_LAYER, "default")."""
    alias = alias or settings.LAYER
    layer = get_channel_layer(alias)
    store = getattr(layer, "taskchan_store", None)
    if store is None:
        backend = "none configured" if layer is None else type(layer).__module__ + "." + type(layer).__name__
        raise NotATaskchanLayer(
            f"CHANNEL_LAYERS[{alias!r}] ({backend}) is not a taskchan layer: set its BACKEND to "
            "'taskchan.layers.RedisChannelLayer' (production) or "
            "'taskchan.layers.InMemoryChannelLayer' (development, no services)."
        )
    return store
