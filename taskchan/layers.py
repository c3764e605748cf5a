"""Channel layers whose ``taskchan.*`` channels are reliable.

Each class is the Channels layer a project already uses (channels_redis, or
channels' in-memory layer) with one addition, ``taskchan_store``: the reliable
store that holds every ``taskchan.*`` channel.  Websocket reply channels and
groups behave exactly as before.  ``layer.send("taskchan.x", {...})`` is routed
to the store through the same validation as ``taskchan.send``, so a message
sent around taskchan's API is still delivered reliably (or refused).

``RedisChannelLayer`` lives in ``redis_layer.py`` and is imported on first use
(PEP 562): a taskchan worker reaches its Redis store straight from the
settings (``get_store``) and never loads channels_redis, whose optional
encryption import alone costs a worker process about 7 MB.
"""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.signals import setting_changed

from .conf import settings
from .exceptions import NotATaskchanLayer, TaskchanError
from .stores.base import StoreBase
from .stores.memory import MemoryStore
from .stores.redis import drain_hosts, shared_store, store_hosts
from .stores.sharded import ShardedStore

TASKCHAN_PREFIX = "taskchan."
REDIS_BACKEND = "taskchan.layers.RedisChannelLayer"
MEMORY_BACKEND = "taskchan.layers.InMemoryChannelLayer"


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


class InMemoryChannelLayer(TaskchanLayerMixin, ChannelsInMemoryLayer):
    """channels' in-memory layer, with ``taskchan.*`` channels in a MemoryStore.

    Producers and workers must share the process: ``runserver`` runs workers
    in-process when this layer is configured.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.taskchan_store = MemoryStore()


def __getattr__(name: str):
    if name == "RedisChannelLayer":
        from .redis_layer import RedisChannelLayer

        return RedisChannelLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_stores: dict[str, StoreBase] = {}


def redis_store(hosts=None, taskchan_host=None, taskchan_hosts=None, prefix=None, drain=None) -> StoreBase:
    """The reliable store for a Redis layer's CONFIG: one RedisStore, or a ShardedStore over several.

    ``drain`` is CONFIG's ``taskchan_drain_hosts``: hosts being taken out,
    still read by workers and the status, never sent to.
    """
    prefix = prefix or settings.KEY_PREFIX
    active_hosts = store_hosts(hosts, taskchan_host, taskchan_hosts)
    stores = [shared_store(host, prefix) for host in active_hosts]
    draining = [shared_store(host, prefix) for host in drain_hosts(drain, active_hosts)]
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
