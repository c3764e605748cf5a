"""The reliable store behind Redis Sentinel, with real redis-server processes.

A master (and, for failover, a replica) and one sentinel monitoring it; the
layer's ``hosts`` entry is channels_redis's Sentinel form, so one CONFIG serves
channels_redis and taskchan.  ``send()`` must land in the master the sentinel
names, a ``runworker`` subprocess configured the same way must run the job, and
after the sentinel promotes the replica ``send()`` must reach the new master.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis as redis_lib

import taskchan
from tests.conftest import KEYS, done_records, free_port, layer_settings, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MASTER = "mymaster"
CHANNEL = "taskchan.t.record"
STREAM = KEYS.stream(CHANNEL)


class Spawned:
    """A redis-server process (replica or sentinel) of the test's own, in a temp dir."""

    def __init__(self, *args: str, port: int, config: str | None = None):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="taskchan-sentinel-")
        command = [shutil.which("redis-server") or "/usr/bin/redis-server"]
        if config is not None:
            # Sentinel rewrites its config file, so it lives in the writable temp dir.
            path = Path(self.dir) / "sentinel.conf"
            path.write_text(config)
            command += [str(path), "--sentinel"]
        else:
            command += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", self.dir, "--daemonize", "no", "--logfile", "", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis_lib.Redis(port=port, decode_responses=True)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _answer(call):
    try:
        return call()
    except redis_lib.RedisError:
        return None


@pytest.fixture
def spawn():
    started: list[Spawned] = []

    def make(*args, **kwargs) -> Spawned:
        process = Spawned(*args, **kwargs)
        started.append(process)
        return process

    yield make
    for process in reversed(started):
        process.stop()


def start_sentinel(spawn, master_port: int) -> Spawned:
    port = free_port()
    config = "\n".join([
        f"port {port}",
        "bind 127.0.0.1",
        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1",
        f"sentinel down-after-milliseconds {MASTER} 1000",
        f"sentinel failover-timeout {MASTER} 3000",
        "",
    ])
    sentinel = spawn(port=port, config=config)
    wait_for(
        lambda: _answer(lambda: sentinel.client.sentinel_get_master_addr_by_name(MASTER)),
        timeout=15, message="the sentinel to know the master",
    )
    return sentinel


def sentinel_layers(sentinel_port: int) -> dict:
    host = {"sentinels": [("127.0.0.1", sentinel_port)], "master_name": MASTER}
    return layer_settings(host)


def master_addr(sentinel: Spawned):
    return _answer(lambda: sentinel.client.sentinel_get_master_addr_by_name(MASTER))


def test_send_stores_in_the_master_and_a_sentinel_configured_worker_runs_it(
    redis_server_factory, spawn, settings, manage, monkeypatch
):
    master = redis_server_factory()
    sentinel = start_sentinel(spawn, master.port)
    settings.CHANNEL_LAYERS = sentinel_layers(sentinel.port)
    monkeypatch.setenv("REDIS_URL", master.url)
    import tests.jobs

    tests.jobs._client = None
    direct = redis_lib.Redis.from_url(master.url, decode_responses=True)

    message_id = taskchan.send(CHANNEL, {"n": 1})
    assert direct.xlen(STREAM) == 1

    proc = manage(
        ["runworker", CHANNEL, "--burst"], redis_url=master.url,
        DJANGO_SETTINGS_MODULE="tests.sentinel_settings", SENTINEL_PORT=sentinel.port, SENTINEL_MASTER=MASTER,
    )
    assert proc.wait(60) == 0, proc.output()
    assert [record[0] for record in done_records(direct)] == [message_id]
    assert direct.xlen(STREAM) == 0
    direct.close()


def test_send_reaches_the_replica_the_sentinel_promotes(redis_server_factory, spawn, settings):
    master = redis_server_factory()
    replica = spawn("--replicaof", "127.0.0.1", str(master.port), port=free_port())

    def linked():
        info = _answer(lambda: replica.client.info("replication")) or {}
        return info.get("master_link_status") == "up"

    wait_for(linked, timeout=15, message="the replica to sync")
    sentinel = start_sentinel(spawn, master.port)
    wait_for(
        lambda: _answer(lambda: sentinel.client.sentinel_slaves(MASTER)),
        timeout=20, message="the sentinel to know the replica",
    )
    settings.CHANNEL_LAYERS = sentinel_layers(sentinel.port)
    settings.TASKCHAN_SEND_RETRY_SECONDS = 30.0

    taskchan.send(CHANNEL, {"n": 1})
    old = redis_lib.Redis(port=master.port)
    assert old.xlen(STREAM) == 1
    # Replication is asynchronous: without WAIT the kill may come before the
    # replica has the first message, which Redis itself would then lose.
    assert old.wait(1, 5000) == 1
    old.close()

    master.kill()
    # Sent at once: send() retries (TASKCHAN_SEND_RETRY_SECONDS) while the
    # sentinel still names the dead master, then finds the promoted replica.
    taskchan.send(CHANNEL, {"n": 2})
    assert int(master_addr(sentinel)[1]) == replica.port
    assert replica.client.info("replication")["role"] == "master"
    assert replica.client.xlen(STREAM) == 2


def test_a_durable_send_through_sentinel_returns_once_the_replica_has_it(redis_server_factory, spawn, settings):
    master = redis_server_factory()
    redis_lib.Redis(port=master.port).config_set("repl-diskless-sync-delay", 0)
    replica = spawn("--replicaof", "127.0.0.1", str(master.port), port=free_port())
    wait_for(lambda: (_answer(lambda: replica.client.info("replication")) or {}).get("master_link_status") == "up",
             timeout=15, message="the replica to sync")
    sentinel = start_sentinel(spawn, master.port)
    settings.CHANNEL_LAYERS = sentinel_layers(sentinel.port)
    # The master counts the replica for WAIT once it is online on the master's side too.
    wait_for(lambda: (redis_lib.Redis(port=master.port).info("replication").get("slave0") or {}).get("state")
             == "online", timeout=15, message="the master to see its replica online")
    settings.TASKCHAN_SEND_REPLICAS = 1
    # Generous for the send that must succeed (a loaded machine answers slowly) ...
    settings.TASKCHAN_SEND_REPLICAS_TIMEOUT = 5.0

    master_client = redis_lib.Redis(port=master.port)
    master_client.config_resetstat()
    message_id = taskchan.send(CHANNEL, {"n": 1})
    # Read at once from the replica: the send returned only once it had the message.
    assert message_id in replica.client.xrange(STREAM)[0][1]["m"]
    # Its script went as a bare EVALSHA: no SCRIPT EXISTS round trip before each send.
    assert "cmdstat_script|exists" not in master_client.info("commandstats")
    # After Redis lost its scripts (a restart, SCRIPT FLUSH) the send loads them and goes again,
    # once, with and without an idempotency key.
    elsewhere = "taskchan.t.durable-after-flush"
    for key in (None, "after-flush"):
        master_client.script_flush()
        kept = taskchan.send(elsewhere, {"key": key}, idempotency_key=key)
        assert kept in [fields["m"] for _, fields in replica.client.xrange(KEYS.stream(elsewhere))][-1]
    assert replica.client.xlen(KEYS.stream(elsewhere)) == 2

    # ... short for the one that must time out.
    settings.TASKCHAN_SEND_REPLICAS_TIMEOUT = 0.3
    replica.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(taskchan.SendNotReplicated, match="may or may not survive"):
            taskchan.send(CHANNEL, {"n": 2})
    finally:
        replica.proc.send_signal(signal.SIGCONT)
    assert redis_lib.Redis(port=master.port).xlen(STREAM) == 2  # on the master all the same
