"""Fixtures for the contract suite: one test body, run on every store.

``store``        a bare store: ``RedisStore`` on the test Redis, ``ClusterStore`` on the
                 test cluster (three masters, a replica each), or ``MemoryStore``
``layer_store``  the configured channel layer's store (taskchan.send and the
                 worker use it): the Redis layer, the in-memory layer, the
                 Redis layer sharded over two servers, or on a Redis Cluster
``run_burst`` / ``arun_burst``  run an in-process burst ``Worker`` to idle
"""

from __future__ import annotations

import asyncio

import pytest

from taskchan.stores.cluster import ClusterStore
from taskchan.stores.configured import get_store
from taskchan.stores.memory import MemoryStore
from taskchan.stores.redis import RedisStore
from taskchan.worker import Worker
from tests.contract import consumers

STORES = ["redis", "memory", "cluster"]


@pytest.fixture(autouse=True)
def _reset_consumer_records():
    consumers.reset()
    yield
    consumers.reset()


@pytest.fixture(params=STORES)
async def store(request):
    """A store of each kind, empty."""
    if request.param == "redis":
        s = RedisStore(request.getfixturevalue("redis_url"))
    elif request.param == "cluster":
        s = ClusterStore([request.getfixturevalue("cluster").url])
    else:
        s = MemoryStore()
    yield s
    if isinstance(s, RedisStore):
        await s.aclose()
        s.client.close()


#: the layouts that keep status records: every one
STATUS_LAYOUTS = ["redis", "memory", "sharded", "cluster"]


def configure_layer(request):
    """Configure this process's channel layer for ``request.param``: the Redis layer, the
    in-memory one, the Redis layer sharding taskchan channels over two Redis servers, or
    on a Redis Cluster."""
    request.getfixturevalue({
        "redis": "use_redis_layer", "memory": "use_memory_layer", "cluster": "use_cluster_layer",
    }.get(request.param, "use_sharded_layer"))
    return request.param


@pytest.fixture(params=[*STORES, "sharded"])
def layer_kind(request):
    """Every layout (``configure_layer``)."""
    return configure_layer(request)


@pytest.fixture
def layer_store(layer_kind):
    """The reliable store taskchan.send() and Worker() use with the configured layer."""
    return get_store()


async def arun_burst(channels, *, store=None, timeout=30.0, **options) -> Worker:
    """Run an in-process burst worker until nothing is queued, scheduled or in flight."""
    options.setdefault("poll_interval", 0.02)
    options.setdefault("grace", 5.0)
    worker = Worker(list(channels), store=store, burst=True, **options)
    try:
        clean = await asyncio.wait_for(worker.arun(), timeout)
    finally:
        # The async clients belong to this loop; close them with the loop.
        await worker.store.aclose()
    assert clean, "the burst worker abandoned running jobs"
    return worker


def run_burst(channels, **options) -> Worker:
    """``arun_burst`` for synchronous tests (which may use the ORM freely)."""
    return asyncio.run(arun_burst(channels, **options))


@pytest.fixture
def burst():
    return run_burst
