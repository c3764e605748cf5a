"""System checks of the reliable store's Redis: its hosts and, for durable sends, its replicas.

Registered with the others when the app is ready (``apps.py``); ``checks.py``
holds the checks of the settings, the layer and the project.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register()
def check_store_hosts(app_configs, **kwargs):
    """The Redis hosts of the reliable store, as ``get_store()`` will read them (E008)."""
    from django.core.exceptions import ImproperlyConfigured

    from .conf import settings as taskchan_settings
    from .stores.hosts import cluster_nodes, drain_hosts, store_hosts

    try:
        alias = taskchan_settings.LAYER
    except ImproperlyConfigured:  # E004 reports a bad TASKCHAN_LAYER
        return []
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get(alias) or {}
    if layer.get("BACKEND") != "taskchan.layers.RedisChannelLayer":
        return []
    config = layer.get("CONFIG") or {}
    try:
        active = store_hosts(config.get("hosts"), config.get("taskchan_host"), config.get("taskchan_hosts"))
        drain_hosts(config.get("taskchan_drain_hosts"), active)
        cluster_nodes(config.get("taskchan_cluster"), config.get("taskchan_host"), config.get("taskchan_hosts"),
                      config.get("taskchan_drain_hosts"))
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="List each Redis once, in 'taskchan_hosts' (several, sharded), 'taskchan_host' (one) "
                "or 'hosts' (shared with channels_redis); or give 'taskchan_cluster' alone (a Redis Cluster).",
                obj=f"CHANNEL_LAYERS[{alias!r}]",
                id="taskchan.E008",
            )
        ]
    return []


@checks.register()
def check_send_replicas(app_configs, **kwargs):
    """TASKCHAN_SEND_REPLICAS that no send can meet: more than a master's replicas (E030), or a
    store without replicas at all, the in-memory one (W031).

    Connects to Redis (a short timeout) only when the setting is on; a Redis
    that does not answer is not reported here: the worker says so at its start
    and every durable send raises SendNotReplicated, naming the master.
    """
    from django.core.exceptions import ImproperlyConfigured
    from redis.exceptions import RedisError

    from .conf import settings as taskchan_settings
    from .stores.configured import get_store
    from .stores.replicas import shortfall

    try:
        wanted = taskchan_settings.SEND_REPLICAS
        store = get_store() if wanted else None
    except Exception:  # E004, E003, E008 report bad settings and layers
        return []
    if store is None:
        return []
    try:
        short = shortfall(store, wanted)
    except NotImplementedError:
        return [checks.Warning(
            f"TASKCHAN_SEND_REPLICAS = {wanted}, but {store!r} has no replicas: sends do not wait.",
            hint="Set it only where taskchan's store is a replicated Redis, Sentinel or a Redis Cluster.",
            id="taskchan.W031",
        )]
    except (RedisError, OSError, ImproperlyConfigured):
        return []
    return [checks.Error(
        f"TASKCHAN_SEND_REPLICAS = {wanted}, but {where} has {count} connected replica(s): every send to it "
        "would raise SendNotReplicated.",
        hint="Lower TASKCHAN_SEND_REPLICAS to the replicas every master has, or add replicas.",
        obj="settings.TASKCHAN_SEND_REPLICAS",
        id="taskchan.E030",
    ) for where, count in short.items()]
