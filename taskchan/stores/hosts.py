"""The Redis hosts of the reliable store, read from the layer's CONFIG.

CONFIG is channels_redis's (``hosts``: URLs, ``(host, port)`` pairs, dicts
of redis-py options, Sentinel dicts) plus taskchan's own ``taskchan_host``,
``taskchan_hosts``, ``taskchan_drain_hosts`` and ``taskchan_cluster`` (a Redis
Cluster: ``cluster.py``).  These functions read it;
``redis.py`` opens the connections, with ``CONNECTION_OPTIONS``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def client_options(host: Any) -> tuple[str | None, dict]:
    """Turn one channels_redis ``hosts`` entry into (url, redis-py keyword arguments)."""
    if isinstance(host, str):
        return host, {}
    if isinstance(host, (tuple, list)):
        return None, {"host": host[0], "port": int(host[1])}
    if isinstance(host, dict):
        options = dict(host)
        address = options.pop("address", None)
        if isinstance(address, (tuple, list)):
            options.update(host=address[0], port=int(address[1]))
            address = None
        return address, options
    raise TypeError(f"cannot read Redis host {host!r}: use a redis:// URL")


def without_password(url: str) -> str:
    """``redis://user:secret@host/0`` as ``redis://user:***@host/0``."""
    return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", url)


def store_hosts(hosts: Any = None, taskchan_host: Any = None, taskchan_hosts: Any = None) -> list:
    """The Redis hosts of the reliable store, from the layer's CONFIG.

    ``taskchan_hosts`` (a list), else ``taskchan_host`` (one), else every
    distinct entry of ``hosts``, as channels_redis shards its own channels
    over them.  More than one host shards taskchan channels (``sharded.py``).
    """
    if taskchan_host and taskchan_hosts:
        raise ImproperlyConfigured(
            "CHANNEL_LAYERS CONFIG sets both 'taskchan_host' and 'taskchan_hosts': keep one "
            "('taskchan_hosts' is a list and shards taskchan channels over it)."
        )
    if taskchan_hosts is not None and (not isinstance(taskchan_hosts, (list, tuple)) or not taskchan_hosts):
        raise ImproperlyConfigured(
            f"CHANNEL_LAYERS CONFIG 'taskchan_hosts' must be a non-empty list of Redis hosts, not {taskchan_hosts!r}."
        )
    if taskchan_hosts:
        chosen = list(taskchan_hosts)
        _refuse_repeats(chosen)  # taskchan's own list: a repeat is a mistake worth saying
        return chosen
    if taskchan_host:
        return [taskchan_host]
    # channels_redis's list: it accepts a server named twice (its ring then
    # has two slots on one server), so taskchan does too, sharding its
    # channels over each distinct server once.
    return distinct(hosts or ["redis://localhost:6379/0"])


def drain_hosts(taskchan_drain_hosts: Any, active: list) -> list:
    """CONFIG's ``taskchan_drain_hosts``: Redis hosts workers still read but nothing is sent to."""
    if taskchan_drain_hosts is None:
        return []
    if not isinstance(taskchan_drain_hosts, (list, tuple)):
        raise ImproperlyConfigured(
            "CHANNEL_LAYERS CONFIG 'taskchan_drain_hosts' must be a list of Redis hosts, "
            f"not {taskchan_drain_hosts!r}."
        )
    _refuse_repeats([*active, *taskchan_drain_hosts])
    return list(taskchan_drain_hosts)


def _identity(host: Any) -> str:
    return json.dumps(host, sort_keys=True, default=str)


def distinct(hosts: list) -> list:
    """``hosts`` with each entry once, in order: the same Redis twice would be two shards sharing every key."""
    seen: dict[str, Any] = {}
    for host in hosts:
        seen.setdefault(_identity(host), host)
    return list(seen.values())


def _refuse_repeats(hosts: list) -> None:
    seen = set()
    for host in hosts:
        identity = _identity(host)
        if identity in seen:
            raise ImproperlyConfigured(
                f"CHANNEL_LAYERS CONFIG lists the Redis host {host!r} twice (in the hosts taskchan "
                "sends to, or both there and in 'taskchan_drain_hosts')."
            )
        seen.add(identity)


def sentinel_options(host: Any) -> tuple[str, list, dict | None, dict] | None:
    """A channels_redis Sentinel ``hosts`` entry as (master_name, sentinels, sentinel_kwargs, connection kwargs).

    ``None`` for any other entry.  The format is channels_redis's own: a dict
    with ``master_name``, ``sentinels`` (a list of (host, port)), an optional
    ``sentinel_kwargs``, and keyword arguments for the master's connections.
    """
    if not isinstance(host, dict) or host.get("master_name") is None:
        return None
    options = dict(host)
    master_name = options.pop("master_name")
    sentinels = [(address[0], int(address[1])) for address in options.pop("sentinels")]
    sentinel_kwargs = options.pop("sentinel_kwargs", None)
    return master_name, sentinels, sentinel_kwargs, options


def cluster_nodes(taskchan_cluster: Any, taskchan_host: Any = None, taskchan_hosts: Any = None,
                  taskchan_drain_hosts: Any = None) -> list[str]:
    """CONFIG's ``taskchan_cluster``: the URL of any node of a Redis Cluster, or a list of several.

    ``[]`` when it is not set.  A cluster shards by itself: CONFIG may not
    also shard taskchan channels over other hosts (``hosts`` stays
    channels_redis's, for websockets and groups, on a plain Redis).
    """
    if taskchan_cluster is None:
        return []
    nodes = [taskchan_cluster] if isinstance(taskchan_cluster, str) else taskchan_cluster
    if not isinstance(nodes, (list, tuple)) or not nodes or not all(
        isinstance(n, str) and re.match(r"rediss?://", n) for n in nodes
    ):
        raise ImproperlyConfigured(
            "CHANNEL_LAYERS CONFIG 'taskchan_cluster' must be the redis:// URL of a Redis Cluster "
            f"node (any one), or a list of such URLs, not {taskchan_cluster!r}."
        )
    clashing = [name for name, value in (("taskchan_host", taskchan_host), ("taskchan_hosts", taskchan_hosts),
                                         ("taskchan_drain_hosts", taskchan_drain_hosts)) if value]
    if clashing:
        raise ImproperlyConfigured(
            f"CHANNEL_LAYERS CONFIG sets 'taskchan_cluster' and {', '.join(repr(c) for c in clashing)}: a Redis "
            "Cluster spreads taskchan channels over its masters by itself; keep 'taskchan_cluster' alone "
            "('hosts' stays channels_redis's plain Redis, for websockets and groups)."
        )
    return list(nodes)


#: redis-py options of every connection a store opens.  Retries are ours
#: (tenacity in producer.py, backoff in the worker), so redis-py must fail fast
#: instead of sleeping through its own retries.
CONNECTION_OPTIONS = {
    "decode_responses": True,
    # Bytes that are not UTF-8 (an entry written around taskchan) come back as
    # lone surrogates instead of failing the whole reply: the worker
    # dead-letters that entry (envelope.decode) and reads on.
    "encoding_errors": "surrogateescape",
    "protocol": 2,
    "socket_connect_timeout": 2,
    # redis-py 8's default, set for every supported version (5-7 wait forever):
    # a frozen or unreachable host fails a call in 5 s.  Must stay above the
    # worker's blocking read (FETCH_BLOCK_SECONDS).
    "socket_timeout": 5,
    "retry_on_timeout": False,
}
