"""taskchan channels on a Redis Cluster (the managed services' "cluster mode").

A cluster splits its keys over 16,384 hash slots held by its masters, and a
script or a multi-key command may only touch keys of one slot.  Every key of
one channel carries the channel's hash tag (``P:q:{CH}``, ``ClusterKeys`` in
``keys.py``), so each of taskchan's steps, one Lua script per step with every
key in KEYS[], stays on one slot, and channels spread over the masters by
their slots.  The keys that are not one channel's are written by commands of
their own: the listing of every channel (``P:channels``, SADD before a
process's first send to a channel) and the worker registry (``P:{w}``).

This is a ``RedisStore`` on redis-py's cluster clients, which follow
``MOVED`` and ``ASK`` redirections, retry ``TRYAGAIN`` and re-read the slot
map after a failover; what they cannot do is done here:

- a worker's partitions are the masters: each channel is read by the
  fetcher of the master that held its slot when the worker looked
  (``partitions``); after a resharding or a failover the channel is also read
  by its new master's fetcher (partitions are only ever added to), and every
  call goes wherever the slot is now;
- one read over several channels cannot be one script (one slot per
  script): ``fetch`` sends one non-blocking fetch.lua per channel side by side
  and, when all are empty, blocks briefly on one channel in turn;
- scripts cannot be pipelined by the cluster client: they are sent side by
  side instead;
- status records: ``cluster_status.py``;
- a durable send (``replicas.py``) needs its script and WAIT on one
  connection to the master of the channel's slot: ``_on_master`` follows the
  redirections itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import replicas
from .base import Partition
from .cluster_status import ClusterStatus
from .codec import PLAIN, Codec
from .hosts import CONNECTION_OPTIONS, without_password
from .keys import GROUP, ClusterKeys
from .redis import RedisStore
from .scripts import load_scripts

logger = logging.getLogger("taskchan.stores")

#: seconds before a process adds a channel to ``P:channels`` again (it may
#: have been flushed); the add is one SADD, before the send
CHANNEL_REGISTRY_SECONDS = 60.0
#: seconds before a failed add to ``P:channels`` is tried again (the send itself went on)
REGISTRY_RETRY_SECONDS = 5.0
#: milliseconds a read over several channels blocks on one of them once all
#: were empty: a message on another waits at most this long to be read
MULTI_CHANNEL_BLOCK_MS = 100
#: redirections a durable send follows before it raises (the send's retry policy tries again)
REDIRECTS = 5


def _cluster_options(retry_class) -> dict:
    return {
        # A few quick tries of the cluster client's own (each re-reads the slot
        # map, which is what a failover needs); longer waits are the callers'.
        "retry": retry_class(ExponentialBackoff(cap=0.5, base=0.05), 2),
        # A MOVED patches the slot map for that slot only.  By default every 5th
        # MOVED makes redis.asyncio close every connection of the client, under
        # the other tasks using them (a worker's fetchers and upkeep run side by
        # side): they fail with TypeError mid-write while a slot moves.
        "reinitialize_steps": 0,
    }


def _closed_under_the_call(exc: TypeError) -> RedisConnectionError:
    """A write to a connection another task's failover handling just closed: retried like one."""
    return RedisConnectionError(f"connection closed under the call ({exc})")


class _AsyncClusterPipeline(redis.asyncio.cluster.ClusterPipeline):
    """A pipeline of ``_AsyncCluster``: the same TypeError, from ``execute``."""

    async def execute(self, *args, **kwargs):
        try:
            return await super().execute(*args, **kwargs)
        except TypeError as exc:
            raise _closed_under_the_call(exc) from exc


class _AsyncCluster(redis.asyncio.cluster.RedisCluster):
    """redis.asyncio's cluster client, whose recovery from CLUSTERDOWN (a failover) only re-reads
    the slot map: redis-py's closes every connection of the client, under the other tasks
    using them (a worker's fetchers, upkeep and acker run side by side), which then fail
    with TypeError mid-write and end the worker.  Such a TypeError (redis-py 8.1 still raises
    some while a master dies) is a connection error here, from a command or a pipeline."""

    async def aclose(self) -> None:
        self._initialize = True  # the slot map is read again before the next command

    async def execute_command(self, *args, **kwargs):
        try:
            return await super().execute_command(*args, **kwargs)
        except TypeError as exc:
            raise _closed_under_the_call(exc) from exc

    def pipeline(self, transaction=None, shard_hint=None):
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused, as redis-py refuses it
        return _AsyncClusterPipeline(self, transaction)

    async def close_connections(self) -> None:
        """What redis-py's ``aclose`` does: the store's ``aclose`` calls this."""
        await super().aclose()


class ClusterStore(ClusterStatus, RedisStore):
    """The reliable store on a Redis Cluster: ``nodes`` are URLs of any of its nodes."""

    def __init__(self, nodes: list[str], prefix: str = "taskchan", codec: Codec = PLAIN):
        self.codec = codec
        self.sentinel = None
        self.urls = list(nodes)
        self.url = self.urls[0]
        # redis.asyncio's cluster client takes no retry_on_timeout (its retry object decides)
        self.options = {k: v for k, v in CONNECTION_OPTIONS.items() if k != "retry_on_timeout"}
        self.keys = ClusterKeys(prefix)
        self._scripts = load_scripts()
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Plain connections to single masters, for durable sends: (host, port) -> client
        self._masters: dict[tuple[str, int], redis.Redis] = {}
        self._amasters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._registered: dict[str, float] = {}  # channel -> when to SADD it to P:channels again
        self._partition_of: dict[str, int] = {}  # master's name -> its partition index, for life
        self._rotation = 0  # which channel a multi-channel read blocks on next

    def __repr__(self) -> str:
        return f"<ClusterStore {', '.join(without_password(u) for u in self.urls)} prefix={self.keys.prefix!r}>"

    def _startup(self, node_class) -> list:
        """The configured nodes, then every node a live async client learnt from the slot map:
        a client made after a configured node died (a failed-over master) still finds the cluster."""
        pairs = [(w.get("host", "localhost"), int(w.get("port", 6379))) for w in map(parse_url, self.urls)]
        try:
            pairs += [(n.host, n.port) for entry in list(self._async.values()) for n in entry[0].get_nodes()]
        except RuntimeError:  # another thread's loop added a client meanwhile: the configured ones
            pass
        return [node_class(host, port) for host, port in dict.fromkeys(pairs)]

    def _master_options(self) -> dict:
        """Options of a plain connection to one master: the cluster URL's credentials, ours."""
        options = {k: v for k, v in parse_url(self.url).items() if k not in ("host", "port", "db")}
        return {**options, **self.options}

    # -- clients ------------------------------------------------------------

    # The sync client reads the slot map when it is made: made on first use, so
    # that building the layer (Django's start) needs no cluster.

    @functools.cached_property
    def client(self) -> redis.cluster.RedisCluster:
        try:
            return redis.cluster.RedisCluster.from_url(
                self.url, startup_nodes=self._startup(redis.cluster.ClusterNode),
                **_cluster_options(redis.retry.Retry), **self.options,
            )
        except RedisClusterException as exc:  # no node answered: a RedisError, as a refused connection is
            raise RedisConnectionError(str(exc)) from exc

    @functools.cached_property
    def _sync_send(self):
        return self.client.register_script(self._scripts["send"])

    @functools.cached_property
    def _sync_charge(self):
        return self.client.register_script(self._scripts["charge"])

    def _aclient(self):
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is None:
            client = _AsyncCluster.from_url(
                self.url, startup_nodes=self._startup(redis.asyncio.cluster.ClusterNode),
                **_cluster_options(redis.asyncio.retry.Retry), **self.options,
            )
            scripts = {name: client.register_script(text) for name, text in self._scripts.items()}
            entry = self._async[loop] = (client, scripts, None)
        return entry[0], entry[1]

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for client in (self._amasters.pop(loop, None) or {}).values():
            await client.aclose()
        entry = self._async.pop(loop, None)
        if entry:
            await entry[0].close_connections()

    def _master(self, host: str, port: int) -> redis.Redis:
        client = self._masters.get((host, port))
        if client is None:
            options = {**self._master_options(), "retry": redis.retry.Retry(NoBackoff(), 0)}
            client = self._masters[(host, port)] = redis.Redis(host=host, port=port, **options)
        return client

    def _amaster(self, host: str, port: int) -> redis.asyncio.Redis:
        clients = self._amasters.setdefault(asyncio.get_running_loop(), {})
        client = clients.get((host, port))
        if client is None:
            options = {**self._master_options(), "retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
            client = clients[(host, port)] = redis.asyncio.Redis(host=host, port=port, **options)
        return client

    # -- producer -----------------------------------------------------------

    def _registration_due(self, channel: str) -> bool:
        return time.monotonic() >= self._registered.get(channel, 0.0)

    @contextlib.contextmanager
    def _listing(self, channel: str):
        """Around the add of ``channel`` to ``P:channels``: when to add it again.

        The listing is for readers (the admin, taskchan_status): a master that
        holds it but does not answer must not stop sends to every channel, so
        the send goes on and the add is tried again a few seconds later.
        """
        try:
            yield
        except (RedisError, OSError) as exc:
            logger.warning("could not list %s in %s (%s); retrying later", channel, self.keys.channels, exc)
            self._registered[channel] = time.monotonic() + REGISTRY_RETRY_SECONDS
        else:
            self._registered[channel] = time.monotonic() + CHANNEL_REGISTRY_SECONDS

    def send(self, channel, raw, message_id, **options) -> str:
        if self._registration_due(channel):
            # Before the send: a channel holding messages is listed (unless its master was down).
            with self._listing(channel):
                self.client.sadd(self.keys.channels, channel)
        keys, args = self.send_args(channel, raw, message_id, **options)
        if replicas.wanted():
            return self._on_master(keys[0], lambda client, asking: replicas.send_waiting(
                client, self._sync_send, keys, args, self, asking=asking
            ))
        return self._sync_send(keys=keys, args=args)

    async def asend(self, channel, raw, message_id, **options) -> str:
        _, scripts = self._aclient()
        await self._alist(channel)
        keys, args = self.send_args(channel, raw, message_id, **options)
        if replicas.wanted():
            return await self._aon_master(keys[0], lambda master, asking: replicas.asend_waiting(
                master, scripts["send"], keys, args, self, asking=asking
            ))
        return await scripts["send"](keys=keys, args=args)

    async def _alist(self, channel: str) -> None:
        if self._registration_due(channel):
            with self._listing(channel):
                await self._aclient()[0].sadd(self.keys.channels, channel)

    async def fire_slot(self, channel, raw, message_id, slot_ms, *, catch_up=False):
        await self._alist(channel)  # listed as a send's channel is (fire.lua adds it to ``P:c:{CH}``)
        return await super().fire_slot(channel, raw, message_id, slot_ms, catch_up=catch_up)

    def _on_master(self, key: str, call):
        """``call(client, asking)`` on a plain connection to the master of ``key``'s slot, following
        redirections: MOVED re-reads the slot map, ASK goes to the importing master (after
        ASKING), TRYAGAIN (a slot half migrated: the keys of one step on two masters) waits."""
        target = None
        for attempt in range(REDIRECTS):
            if target is None:
                node = self.client.get_node_from_key(key)
                target, asking = (node.host, node.port), False
            try:
                return call(self._master(*target), asking)
            except MovedError:
                self.client.nodes_manager.initialize()
                target = None
            except AskError as exc:  # after MovedError: MOVED is a kind of ASK in redis-py
                target, asking = (exc.host, exc.port), True
            except TryAgainError:
                time.sleep(0.05 * (attempt + 1))
                target = None
            except (RedisConnectionError, RedisTimeoutError):
                # The master may have failed over: the next try asks the cluster again.
                self.client.nodes_manager.initialize()
                raise
        raise TryAgainError(f"the slot of {key!r} is moving ({REDIRECTS} redirections); try again")

    async def _aon_master(self, key: str, call):
        client, _ = self._aclient()
        await client.initialize()  # the slot map (a no-op once read)
        target = None
        for attempt in range(REDIRECTS):
            if target is None:
                node = client.get_node_from_key(key)
                target, asking = (node.host, node.port), False
            try:
                return await call(self._amaster(*target), asking)
            except MovedError:
                await client.nodes_manager.initialize()
                target = None
            except AskError as exc:
                target, asking = (exc.host, exc.port), True
            except TryAgainError:
                await asyncio.sleep(0.05 * (attempt + 1))
                target = None
            except (RedisConnectionError, RedisTimeoutError):
                await client.nodes_manager.initialize()
                raise
        raise TryAgainError(f"the slot of {key!r} is moving ({REDIRECTS} redirections); try again")

    def send_many(self, items):
        # The cluster client pipelines no scripts: one send each, following its redirections.
        return [self.send(channel, raw, message_id, **options) for channel, raw, message_id, options in items]

    # -- worker -------------------------------------------------------------

    async def partitions(self, channels):
        """One partition per master, holding the channels whose slot it serves now."""
        client, _ = self._aclient()
        await client.initialize()
        by_master: dict[str, list[str]] = {}
        for channel in channels:
            node = client.get_node_from_key(self.keys.stream(channel))
            by_master.setdefault(node.name, []).append(channel)
        parts = []
        for name, mine in by_master.items():
            index = self._partition_of.setdefault(name, len(self._partition_of))
            parts.append(Partition(index, self, mine))
        return parts

    async def fetch(self, channels, consumer, count, block_ms):
        # One fetch.lua per channel (each on its slot's master), side by side;
        # the cluster client follows each one's redirections.
        client, scripts = self._aclient()
        *replies, live = await asyncio.gather(*(
            scripts["fetch"](keys=self._fetch_keys(c), args=[GROUP, consumer, int(count)]) for c in channels
        ), self._live_markers_read(client), return_exceptions=True)
        deliveries, missing, error = self._sorted_fetches(channels, replies)
        if missing:
            await self.prepare(missing)
        if error is not None:
            raise error  # what the others leased comes back by reclaim once its lease lapses
        if deliveries or not block_ms:
            return await self._marked(deliveries, live)
        # All empty: wait on one of them, a different one each time.
        self._rotation = (self._rotation + 1) % len(channels)
        waited = channels[self._rotation]
        wait_ms = block_ms if len(channels) == 1 else min(block_ms, MULTI_CHANNEL_BLOCK_MS)
        return await self._wait_read([waited], consumer, count, wait_ms)

    async def values_of(self, keys):
        client, _ = self._aclient()
        pipe = client.pipeline()
        for key in keys:
            pipe.get(key)
        return await pipe.execute()

    async def promote_all(self, channels):
        _, scripts = self._aclient()
        replies = await asyncio.gather(*(
            scripts["promote"](keys=self._promote_keys(c), args=[500]) for c in channels
        ))
        return sum(int(moved) for moved, _next_due in replies)

    async def remove_worker(self, worker_id, consumer=None, channels=()):
        await super().remove_worker(worker_id)
        if consumer and channels:
            _, scripts = self._aclient()
            await asyncio.gather(*(
                scripts["forget"](keys=[self.keys.stream(c)], args=[GROUP, 0, consumer]) for c in channels
            ))

    async def flush(self):
        self._registered.clear()
        await super().flush()

    async def replicas_per_master(self) -> dict[str, int]:
        """Each master's connected replicas (the system check and the worker compare them with
        TASKCHAN_SEND_REPLICAS)."""
        client, _ = self._aclient()
        await client.initialize()
        out = {}
        for node in client.get_primaries():
            info = await client.info("replication", target_nodes=node)
            out[node.name] = int(info.get("connected_slaves", 0))
        return out

