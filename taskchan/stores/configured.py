"""The store of the configured channel layer: ``get_store`` and its cache.

Everything that reaches taskchan's store without a layer object in hand (the
producer, workers, the admin, ``taskchan_status``, metrics) calls
``get_store()``.  A Redis store is built straight from the layer's CONFIG,
without building the channels_redis layer (a worker never loads
channels_redis); an in-memory store is the layer's own, since producers and
workers must share it.  The layer classes (``taskchan/layers.py``) build their
``taskchan_store`` with the same ``redis_store``, so a layer and
``get_store()`` share one store per list of hosts.
"""

from __future__ import annotations

from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.signals import setting_changed

from ..conf import settings
from ..exceptions import NotATaskchanLayer
from .base import ProducerStore
from .cluster import ClusterStore
from .codec import codec_for
from .hosts import cluster_nodes, drain_hosts, store_hosts
from .redis import shared_store
from .sharded import ShardedStore

#: the BACKEND paths of taskchan's layers (``taskchan/layers.py``)
REDIS_BACKEND = "taskchan.layers.RedisChannelLayer"
MEMORY_BACKEND = "taskchan.layers.InMemoryChannelLayer"

#: layer alias -> its store, until CHANNEL_LAYERS or a TASKCHAN_* setting changes
_stores: dict[str, ProducerStore] = {}
#: one ShardedStore per list of hosts (by the ids of their shared RedisStores)
_sharded: dict[tuple, ShardedStore] = {}


#: one ClusterStore per list of nodes, prefix and keys
_clusters: dict[tuple, ClusterStore] = {}


def redis_store(
    hosts=None, taskchan_host=None, taskchan_hosts=None, prefix=None, drain=None, encryption_keys=None,
    cluster=None,
) -> ProducerStore:
    """The reliable store for a Redis layer's CONFIG: one RedisStore, or a ShardedStore over several.

    ``drain`` is CONFIG's ``taskchan_drain_hosts``: hosts being taken out,
    still read by workers and the status, never sent to.  ``encryption_keys``
    is CONFIG's ``symmetric_encryption_keys``: what the store holds is sealed
    with them (``stores/codec.py``).  ``cluster`` is CONFIG's
    ``taskchan_cluster``: a Redis Cluster's node URL(s), for a ``ClusterStore``.
    """
    prefix = prefix or settings.KEY_PREFIX
    codec = codec_for(encryption_keys)
    if nodes := cluster_nodes(cluster, taskchan_host, taskchan_hosts, drain):
        key = (tuple(nodes), prefix, id(codec))
        if key not in _clusters:
            _clusters[key] = ClusterStore(nodes, prefix=prefix, codec=codec)
        return _clusters[key]
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


def get_store(alias: str | None = None) -> ProducerStore:
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
            config.get("symmetric_encryption_keys"), config.get("taskchan_cluster"),
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
