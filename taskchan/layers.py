"""Channel layers whose ``taskchan.*`` channels are reliable.

Each class is the Channels layer a project already uses (channels_redis, or
channels' in-memory layer) with one addition, ``taskchan_store``: the reliable
store that holds every ``taskchan.*`` channel.  Websocket reply channels and
groups behave exactly as before.  ``layer.send("taskchan.x", {...})`` is routed
to the store through the same validation as ``taskchan.send``, so a message
sent around taskchan's API is still delivered reliably (or refused); so is a
``group_send`` to a group with ``taskchan.*`` members (``store_group_jobs``).
docs/migrating.md lists every way these layers differ from Channels' own on
``taskchan.*`` names, and why.

``RedisChannelLayer`` lives in ``redis_layer.py`` and is imported on first use
(PEP 562): a taskchan worker reaches its Redis store straight from the
settings (``get_store``) and never loads channels_redis, whose optional
encryption import alone costs a worker process about 7 MB.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.signals import setting_changed

from .conf import settings
from .envelope import validate_channel
from .exceptions import InvalidChannelName, NotATaskchanLayer, StoreUnavailable, TaskchanError
from .stores.base import StoreBase
from .stores.codec import codec_for
from .stores.hosts import drain_hosts, store_hosts
from .stores.memory import MemoryStore
from .stores.redis import shared_store
from .stores.sharded import ShardedStore

TASKCHAN_PREFIX = "taskchan."
REDIS_BACKEND = "taskchan.layers.RedisChannelLayer"
MEMORY_BACKEND = "taskchan.layers.InMemoryChannelLayer"

logger = logging.getLogger("taskchan.layers")


#: the group whose group_send is sending (in-memory layer: channels' group_send
#: calls send() once per member, in tasks that inherit this)
_sending_to_group: ContextVar[str | None] = ContextVar("taskchan_sending_to_group", default=None)


def is_taskchan(channel) -> bool:
    return isinstance(channel, str) and channel.startswith(TASKCHAN_PREFIX)


class TaskchanLayerMixin:
    taskchan_store: StoreBase

    async def send(self, channel, message):
        if not is_taskchan(channel):
            await super().send(channel, message)
        elif (group := _sending_to_group.get()) is not None:
            await self.store_group_jobs(group, [channel], message)
        else:
            from .producer import asend

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
        from .producer import asend

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


class InMemoryChannelLayer(TaskchanLayerMixin, ChannelsInMemoryLayer):
    """channels' in-memory layer, with ``taskchan.*`` channels in a MemoryStore.

    Producers and workers must share the process: ``runserver`` runs workers
    in-process when this layer is configured.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.taskchan_store = MemoryStore()

    async def group_send(self, group, message):
        # channels' own group_send sends to each member through send(), which
        # stores a taskchan member's job (store_group_jobs) when it sees this.
        token = _sending_to_group.set(group)
        try:
            await super().group_send(group, message)
        finally:
            _sending_to_group.reset(token)


def __getattr__(name: str):
    if name == "RedisChannelLayer":
        from .redis_layer import RedisChannelLayer

        return RedisChannelLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_stores: dict[str, StoreBase] = {}


def redis_store(
    hosts=None, taskchan_host=None, taskchan_hosts=None, prefix=None, drain=None, encryption_keys=None
) -> StoreBase:
    """The reliable store for a Redis layer's CONFIG: one RedisStore, or a ShardedStore over several.

    ``drain`` is CONFIG's ``taskchan_drain_hosts``: hosts being taken out,
    still read by workers and the status, never sent to.  ``encryption_keys``
    is CONFIG's ``symmetric_encryption_keys``: what the store holds is sealed
    with them (``stores/codec.py``).
    """
    prefix = prefix or settings.KEY_PREFIX
    codec = codec_for(encryption_keys)
    active_hosts = store_hosts(hosts, taskchan_host, taskchan_hosts)
    stores = [shared_store(host, prefix, codec) for host in active_hosts]
    draining = [shared_store(host, prefix, codec) for host in drain_hosts(drain, active_hosts)]
    if len(stores) == 1 and not draining:
        return stores[0]
    # One per list of hosts, like shared_store: the layer and get_store() share it.
    key = (tuple(id(s) for s in stores), tuple(id(s) for s in draining))
    sharded = _sharded.get(key)
    if sharded is None:
        sharded = _sharded[key] = ShardedStore(stores, draining=draining)
    return sharded


_sharded: dict[tuple, ShardedStore] = {}


def get_store(alias: str | None = None) -> StoreBase:
    """The reliable store of the configured layer (TASKCHAN_LAYER, "default").

    A Redis store is built from the layer's settings, without building the
    channels_redis layer itself; an in-memory store must be the layer's own
    (producers and workers share it), so that one comes from the layer.
    """
    alias = alias or settings.LAYER
    store = _stores.get(alias)
    if store is not None:
        return store
    layer_settings = (getattr(django_settings, "CHANNEL_LAYERS", None) or {}).get(alias) or {}
    if layer_settings.get("BACKEND") == REDIS_BACKEND:
        config = layer_settings.get("CONFIG") or {}
        store = redis_store(
            config.get("hosts"), config.get("taskchan_host"), config.get("taskchan_hosts"),
            config.get("taskchan_prefix"), config.get("taskchan_drain_hosts"),
            config.get("symmetric_encryption_keys"),
        )
    else:
        layer = get_channel_layer(alias)
        store = getattr(layer, "taskchan_store", None)
        if store is None:
            backend = "none configured" if layer is None else type(layer).__module__ + "." + type(layer).__name__
            raise NotATaskchanLayer(
                f"CHANNEL_LAYERS[{alias!r}] ({backend}) is not a taskchan layer: set its BACKEND to "
                f"'{REDIS_BACKEND}' (production) or '{MEMORY_BACKEND}' (development, no services)."
            )
    _stores[alias] = store
    return store


def _forget_stores(*, setting: str, **kwargs) -> None:
    # As channels' layer manager does for CHANNEL_LAYERS: settings changed in
    # tests (override_settings) take effect at once.
    if setting == "CHANNEL_LAYERS" or setting.startswith("TASKCHAN_"):
        _stores.clear()


setting_changed.connect(_forget_stores)
