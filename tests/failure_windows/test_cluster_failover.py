"""A Redis Cluster losing a master, and moving a slot, while sends and work go on.

Failover: a cluster of the test's own (three masters, a replica each, node
timeout 1 s), a ``runworker`` on eight channels spread over the masters, and
sends from the test process.  Then the window replication leaves open: the
replica of the master M holding ``taskchan.sh.a`` falls behind (SIGSTOP) while
the worker is busy elsewhere (SIGSTOP: a backlog not yet reached), sends go on,
M is SIGKILLed and the replica, resumed, is promoted without what M accepted
last; M's supervisor then restarts it and it rejoins as a replica.  With TASKCHAN_SEND_REPLICAS = 1 (the default here) each of those sends
raises ``SendNotReplicated`` instead of returning, is sent again with its
idempotency key until the new master holds it, and nothing accepted is lost.
``TASKCHAN_FAILOVER_REPLICAS=0`` runs the same without waiting for replicas
and reports what is lost (the sends M accepted last) instead of asserting 0.
The line goes to test-artifacts/cluster-failover-R.txt.

Resharding: the slot of ``taskchan.sh.a`` moves from its master to another,
key by key with pauses (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE,
SETSLOT NODE, as ``redis-cli --cluster reshard`` does), while a thread sends
durably to every channel and the worker works: the sends follow ASK and
TRYAGAIN, and every accepted message runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis.cluster

import taskchan
from taskchan.stores.keys import ClusterKeys
from tests.conftest import ARTIFACTS, done_records, layer_settings, wait_for
from tests.failure_windows.helpers import Progress
from tests.jobs import SHARDED_CHANNELS
from tests.servers import RedisClusterServers

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = ClusterKeys("taskchan")
REPLICAS = int(os.environ.get("TASKCHAN_FAILOVER_REPLICAS", "1"))
CHANNEL = SHARDED_CHANNELS[0]


@pytest.fixture
def own_cluster(redis_url, settings):
    """A cluster of this test's own (it kills or reshapes it), as this process's taskchan store."""
    cluster = RedisClusterServers()
    settings.CHANNEL_LAYERS = layer_settings(redis_url, taskchan_cluster=cluster.url)
    settings.TASKCHAN_SEND_REPLICAS = REPLICAS
    settings.TASKCHAN_SEND_REPLICAS_TIMEOUT = 0.2
    yield cluster
    cluster.stop()


def start_worker(manage, cluster, redis_url):
    proc = manage(["runworker", "taskchan.sh.*", "--concurrency", "4"], redis_url=redis_url,
                  TASKCHAN_REDIS_CLUSTER_URL=cluster.url)
    client = redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)
    wait_for(lambda: client.zcard(KEYS.workers), timeout=60, message="the worker registered")
    client.close()
    return proc


def send(n: int) -> str | None:
    """One try: the id once stored (and, durable, on a replica), or None."""
    try:
        return taskchan.send(SHARDED_CHANNELS[n % len(SHARDED_CHANNELS)], {"n": n}, idempotency_key=f"k{n}")
    except (taskchan.StoreUnavailable, taskchan.SendNotReplicated):
        return None


def send_until_accepted(n: int, timeout: float = 60) -> str:
    return wait_for(lambda: send(n), timeout=timeout, interval=0.1, message=f"send {n} accepted")


def wait_done(redis_client, accepted: set[str], what: str) -> set[str]:
    """Wait until every accepted id ran, or nothing more ran for 20 s; the ids that did not run."""
    progress = Progress(lambda: redis_client.llen("t:done"), stall_after=20)
    while not accepted <= {r[0] for r in done_records(redis_client)}:
        try:
            progress.check(what)
        except AssertionError:
            break
        time.sleep(0.2)
    return accepted - {r[0] for r in done_records(redis_client)}


def replica_of(cluster, master):
    with cluster.client(master) as c:
        port = int(c.info("replication")["slave0"]["port"])
    return next(n for n in cluster.nodes if n.port == port)


@pytest.mark.timeout(240)
def test_a_master_killed_mid_run_loses_no_message_whose_send_waited_for_its_replica(
    own_cluster, redis_url, redis_client, manage
):
    cluster = own_cluster
    worker = start_worker(manage, cluster, redis_url)
    accepted = {send_until_accepted(n) for n in range(80)}

    master = cluster.master_of(KEYS.stream(CHANNEL))
    replica = replica_of(cluster, master)
    worker.signal(signal.SIGSTOP)  # a backlog the worker has not reached
    # A replica falling behind: stopped, and its link cut (what the master had
    # already written to the link would still reach it from the socket's buffer).
    replica.proc.send_signal(signal.SIGSTOP)
    with cluster.client(master) as c:
        c.client_kill_filter(_type="replica")
    unanswered = []
    for n in range(80, 120):
        message_id = send(n)
        accepted.add(message_id) if message_id else unanswered.append(n)
    master.kill()
    replica.proc.send_signal(signal.SIGCONT)
    worker.signal(signal.SIGCONT)
    wait_for(lambda: cluster.serving(KEYS.stream(CHANNEL)) is replica, timeout=60, message="the replica promoted")
    # Its supervisor restarts the dead master, which rejoins as the new master's
    # replica: until then a send that waits for a replica of that slot cannot be
    # answered (one replica per master; docs/deploying.md, "Durable sends").
    master.start()
    # The sends go on through the failover, each until it is accepted.
    accepted |= {send_until_accepted(n) for n in range(120, 200)}
    accepted |= {send_until_accepted(n) for n in unanswered}

    lost = wait_done(redis_client, accepted, "the run after the failover")
    line = (f"cluster failover (TASKCHAN_SEND_REPLICAS={REPLICAS}): accepted={len(accepted)} "
            f"unanswered-then-resent={len(unanswered)} lost={len(lost)}")
    print(line)
    (ARTIFACTS / f"cluster-failover-{REPLICAS}.txt").write_text(line + "\n")
    assert worker.running, worker.output()[-3000:]
    if REPLICAS:
        # The sends to M while its replica lagged were not accepted: the window was open.
        assert unanswered, "no send waited on the lagging replica"
        assert not lost, line


def migrate_slot(cluster, key: str, target, pause: float) -> None:
    """Move ``key``'s slot to ``target``, one key at a time with ``pause`` s between keys."""
    source = cluster.master_of(key)
    src, dst = cluster.client(source), cluster.client(target)
    slot = src.cluster("keyslot", key)
    src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    moved = 0
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        moved += 1
        time.sleep(pause)
    for node in [target, source, *(m for m in cluster.masters() if m not in (target, source))]:
        with cluster.client(node) as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    src.close()
    dst.close()
    assert moved >= 3, "the slot held the channel's keys"


@pytest.mark.timeout(180)
def test_a_slot_migrated_mid_run_loses_nothing(own_cluster, redis_url, redis_client, manage):
    cluster = own_cluster
    worker = start_worker(manage, cluster, redis_url)
    accepted: set[str] = set()
    stop = threading.Event()

    def keep_sending():
        n = 0
        while not stop.is_set():
            accepted.add(send_until_accepted(n))
            n += 1
            time.sleep(0.005)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        wait_for(lambda: len(accepted) >= 100, timeout=60, message="sends under way")
        target = next(m for m in cluster.masters() if m is not cluster.master_of(KEYS.stream(CHANNEL)))
        migrate_slot(cluster, KEYS.stream(CHANNEL), target, pause=0.3)
        sent_at_move = len(accepted)
        wait_for(lambda: len(accepted) >= sent_at_move + 100, timeout=60, message="sends after the move")
    finally:
        stop.set()
        sender.join(60)

    lost = wait_done(redis_client, accepted, "the run after the resharding")
    print(f"cluster resharding: accepted={len(accepted)} lost={len(lost)}")
    assert worker.running, worker.output()[-3000:]
    assert cluster.master_of(KEYS.stream(CHANNEL)) is target
    assert not lost
