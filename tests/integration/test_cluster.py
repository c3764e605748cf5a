"""taskchan channels on a Redis Cluster, and sends that wait for replicas, with real servers.

The cluster is the session's (``tests/conftest.py``: three masters with a
replica each, started with ``redis-cli --cluster create``); the contract and
delivery suites run on it too (``tests/contract/``).  These tests check what
only a cluster has: where the keys live, a worker process reading every
master, and ``TASKCHAN_SEND_REPLICAS`` on a cluster and on a replicated Redis.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections import Counter

import pytest
import redis as redis_lib
import redis.cluster
from django.core.exceptions import ImproperlyConfigured

import taskchan
from taskchan.stores.cluster import ClusterStore
from taskchan.stores.configured import get_store, redis_store
from taskchan.stores.keys import ClusterKeys
from taskchan.stores.slot_tags import tag_of
from tests.conftest import done_records, layer_settings, on_store, wait_for
from tests.jobs import SHARDED_CHANNELS
from tests.servers import STARTUP_TIMEOUT, RedisClusterServers

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = ClusterKeys("taskchan")


def cluster_client(cluster) -> redis.cluster.RedisCluster:
    return redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)


def replica_of(cluster, master):
    """The cluster node replicating ``master``."""
    with cluster.client(master) as c:
        port = int(c.info("replication")["slave0"]["port"])
    return next(n for n in cluster.nodes if n.port == port)


# -- where the keys live -------------------------------------------------------------


def test_every_key_of_a_channel_is_in_its_slot_and_channels_spread_over_the_masters(use_cluster_layer):
    client = cluster_client(use_cluster_layer)
    records = {}
    for channel in SHARDED_CHANNELS:
        sent = [taskchan.send(channel, {"n": 1}, idempotency_key="once"), taskchan.send(channel, {"n": 2}, delay=60)]
        records[channel] = {KEYS.status(message_id) for message_id in sent}

    keys = list(client.scan_iter(match="taskchan:*"))
    per_channel = {c: [k for k in keys if f"{{{c}}}" in k] for c in SHARDED_CHANNELS}
    for channel, mine in per_channel.items():
        # stream, schedule, idempotency key, the slot's channel set
        assert len(mine) == 4, mine
        # and the status records, tagged by their ids (``slot_tags.py``)
        assert {client.keyslot(k) for k in [*mine, *records[channel]]} == {client.keyslot(KEYS.stream(channel))}
    untagged = set(keys) - {k for mine in per_channel.values() for k in mine}
    assert untagged == {KEYS.channels, *(k for mine in records.values() for k in mine)}
    assert sorted(client.smembers(KEYS.channels)) == SHARDED_CHANNELS
    masters = Counter(client.get_node_from_key(KEYS.stream(c)).name for c in SHARDED_CHANNELS)
    assert len(masters) == 3, masters


def test_a_worker_process_serves_the_channels_of_every_master(cluster, redis_url, redis_client, manage):
    # The reference project's settings, from the environment, as a deployment sets them.
    env = {"TASKCHAN_REDIS_CLUSTER_URL": cluster.url, "TASKCHAN_VISIBILITY_TIMEOUT": 2}
    store = ClusterStore([cluster.url])
    sent = {store.send(c, taskchan_envelope(c, n), f"m{c}{n}") for c in SHARDED_CHANNELS for n in range(5)}

    proc = manage(["runworker", "taskchan.sh.*", "--burst"], redis_url=redis_url, **env)

    assert proc.wait(90) == 0, proc.output()[-3000:]
    done = Counter(r[0] for r in done_records(redis_client))
    assert set(done) == sent
    assert set(done.values()) == {1}
    assert on_store(store, lambda: store.is_idle(SHARDED_CHANNELS))


def taskchan_envelope(channel: str, n: int) -> str:
    from taskchan.envelope import Envelope

    envelope = Envelope.new(channel, {"n": n})
    envelope.id = f"m{channel}{n}"
    return envelope.encode()


def test_a_fired_schedule_slot_gets_an_id_of_its_slot_and_its_status_is_kept(use_cluster_layer, redis_client, worker):
    """The ticker's messages take the store's ids as sends do: on a cluster the worker's status
    updates of a fired slot land in a record ``status()`` finds (docs/status.md)."""
    worker("taskchan.flow.tick", TASKCHAN_TEST_FLOW="1", TASKCHAN_REDIS_CLUSTER_URL=use_cluster_layer.url)
    wait_for(lambda: redis_client.llen("f:taskchan.flow.tick") >= 1, timeout=STARTUP_TIMEOUT, message="a slot fired")
    message_id = json.loads(redis_client.lindex("f:taskchan.flow.tick", 0))[0]
    assert tag_of(message_id) is not None, message_id
    wait_for(lambda: taskchan.status(message_id).state == "succeeded", timeout=10, message="its status")


# -- configuration ---------------------------------------------------------------------


def test_a_cluster_with_sharding_is_refused(settings):
    with pytest.raises(ImproperlyConfigured, match=r"taskchan_cluster.*taskchan_hosts"):
        redis_store(taskchan_hosts=["redis://a:6379/0", "redis://b:6379/0"], cluster="redis://c:7000")
    with pytest.raises(ImproperlyConfigured, match=r"redis:// URL of a Redis Cluster node"):
        redis_store(cluster=["not a url"])


# -- sends that wait for replicas ------------------------------------------------------


def test_a_durable_send_on_a_cluster_returns_once_the_replica_has_it(use_cluster_layer, settings):
    settings.TASKCHAN_SEND_REPLICAS = 1
    cluster = use_cluster_layer
    channel = SHARDED_CHANNELS[0]
    replica = replica_of(cluster, cluster.master_of(KEYS.stream(channel)))

    message_id = taskchan.send(channel, {"n": 1})

    with cluster.client(replica) as c:
        c.execute_command("READONLY")
        assert c.xrange(KEYS.stream(channel))[0][1]["m"].find(message_id) > 0


@pytest.mark.parametrize("kind", ["cluster", "replicated"])
def test_a_durable_send_raises_when_no_replica_acknowledges_in_time(kind, request, settings, redis_server_factory):
    settings.TASKCHAN_SEND_REPLICAS = 1
    settings.TASKCHAN_SEND_REPLICAS_TIMEOUT = 0.2
    channel = SHARDED_CHANNELS[0]
    if kind == "cluster":
        cluster = request.getfixturevalue("use_cluster_layer")
        replica = replica_of(cluster, cluster.master_of(KEYS.stream(channel)))
    else:
        master, replica = replicated_pair(redis_server_factory)
        settings.CHANNEL_LAYERS = layer_settings(master.url)
    get_store().send  # noqa: B018  (the clients are made before the replica stops answering)

    replica.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(taskchan.SendNotReplicated, match="may or may not survive a failover") as caught:
            taskchan.send(channel, {"n": 1})
    finally:
        replica.proc.send_signal(signal.SIGCONT)

    assert caught.value.message_id and (caught.value.acknowledged, caught.value.wanted) == (0, 1)
    # Stored on the master all the same: the replica catches up, and the next send waits for it.
    assert sent_once_replicated(channel, {"n": 2})


def test_a_repeated_key_waits_for_the_first_message_even_on_another_connection(settings, redis_server_factory):
    master, replica = replicated_pair(redis_server_factory)
    settings.CHANNEL_LAYERS = layer_settings(master.url)
    settings.TASKCHAN_SEND_REPLICAS = 1
    settings.TASKCHAN_SEND_REPLICAS_TIMEOUT = 0.2
    channel = SHARDED_CHANNELS[0]

    replica.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(taskchan.SendNotReplicated) as first:
            taskchan.send(channel, {"n": 1}, idempotency_key="order-1")
        # The repeat stores nothing and comes through another connection (asyncio's):
        # its WAIT must still cover the first message, which no replica has.
        with pytest.raises(taskchan.SendNotReplicated) as repeat:
            asyncio.run(taskchan.asend(channel, {"n": 1}, idempotency_key="order-1"))
    finally:
        replica.proc.send_signal(signal.SIGCONT)
    assert repeat.value.message_id == first.value.message_id
    # Once the replica is back and has caught up, the repeat is confirmed.
    assert sent_once_replicated(channel, {"n": 1}, idempotency_key="order-1") == first.value.message_id


def test_asking_for_more_replicas_than_a_master_has_fails_every_send_saying_so(settings, redis_server_factory):
    master, _replica = replicated_pair(redis_server_factory)
    settings.CHANNEL_LAYERS = layer_settings(master.url)
    settings.TASKCHAN_SEND_REPLICAS = 2
    settings.TASKCHAN_SEND_REPLICAS_TIMEOUT = 0.5

    with pytest.raises(taskchan.SendNotReplicated, match="of the 2 replica"):
        taskchan.send(SHARDED_CHANNELS[0], {"n": 1})
    assert on_store(get_store(), get_store().replicas_per_master) == {repr(get_store()): 1}


async def test_an_async_durable_send_waits_too(use_cluster_layer, settings):
    settings.TASKCHAN_SEND_REPLICAS = 1
    store = get_store()
    try:
        message_id = await taskchan.asend(SHARDED_CHANNELS[1], {"n": 1})
        assert message_id
        assert sorted(await store.replicas_per_master()) == sorted(f"127.0.0.1:{n.port}" for n in use_cluster_layer.masters())
        assert set((await store.replicas_per_master()).values()) == {1}
    finally:
        await store.aclose()


def sent_once_replicated(channel, content, **options) -> str:
    """``send()`` until a replica acknowledges it (a replica just resumed is still catching up)."""

    def attempt():
        try:
            return taskchan.send(channel, content, **options)
        except taskchan.SendNotReplicated:
            return None

    return wait_for(attempt, timeout=20, message="a replica to acknowledge")


def replicated_pair(factory):
    """A master and a replica following it (replication link up)."""
    master, replica = factory(), factory()
    with redis_lib.Redis(port=master.port) as c:
        c.config_set("repl-diskless-sync-delay", 0)  # the first sync at once, not 5 s later
    client = redis_lib.Redis(port=replica.port, decode_responses=True)
    client.replicaof("127.0.0.1", master.port)
    wait_for(lambda: client.info("replication").get("master_link_status") == "up", message="replication link up")
    client.close()
    return master, replica


def test_a_durable_send_to_a_slot_being_migrated_is_retried_until_it_lands_on_the_new_master(
    use_cluster_layer, settings
):
    settings.TASKCHAN_SEND_REPLICAS = 1
    settings.TASKCHAN_SEND_RETRY_SECONDS = 10.0
    cluster = use_cluster_layer
    channel = SHARDED_CHANNELS[2]
    source = cluster.master_of(KEYS.stream(channel))
    target = next(m for m in cluster.masters() if m is not source)
    sent: list = []
    with cluster.client(source) as src, cluster.client(target) as dst:
        slot = src.cluster("keyslot", KEYS.stream(channel))
        src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        try:
            # The channel has no keys yet: the source answers ASK, and the target,
            # missing some of the step's keys, TRYAGAIN until the slot is its own.
            sender = threading.Thread(target=lambda: sent.append(taskchan.send(channel, {"n": 1})))
            sender.start()
            time.sleep(0.5)
            assert not sent, "stored while the slot was half migrated"
        finally:
            for node in [target, source, *(m for m in cluster.masters() if m not in (target, source))]:
                with cluster.client(node) as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        sender.join(15)
        assert sent and sent[0] in dst.xrange(KEYS.stream(channel))[0][1]["m"]


# -- a configured node that died ---------------------------------------------------------


def test_a_sync_client_made_after_the_configured_node_died_finds_the_cluster_through_the_nodes_learnt():
    # A worker's job thread makes the store's sync client on first use (a
    # reclaimed delivery's charge): by then the node the settings name may be a
    # failed-over master.  Its async client, made at the worker's start, knows
    # every node from the slot map; the sync client starts from those too.
    cluster = RedisClusterServers()
    loop = asyncio.new_event_loop()
    try:
        masters = cluster.masters()
        configured = next(n for n in cluster.nodes if n not in masters)  # a replica: no failover to wait for
        store = ClusterStore([configured.url])
        loop.run_until_complete(store.prepare(["taskchan.c.dead-node"]))  # the async client, as a worker's
        configured.kill()

        assert store.client.ping()
        assert {n.port for n in store.client.get_nodes()} >= {n.port for n in masters}

        # With no node learnt, and none of the configured ones answering: a RedisError
        # (what the worker's charge skips and leaves to lapse), not RedisClusterException.
        with pytest.raises(redis_lib.exceptions.ConnectionError, match="cannot be connected"):
            ClusterStore([configured.url]).client.ping()
        loop.run_until_complete(store.aclose())
    finally:
        loop.close()
        cluster.stop()
