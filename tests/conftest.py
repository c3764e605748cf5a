"""Shared fixtures: a private Redis per test, worker subprocesses, counting.

Every test that needs Redis gets an empty one of its own: each xdist worker
starts one ``redis-server`` on a free port and the fixture flushes it before
the test.  Tests that kill or restart Redis use ``redis_server_factory`` for a
server of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from taskchan.stores.keys import Keys
from tests.servers import STARTUP_TIMEOUT, RedisClusterServers, RedisServer, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
#: the keys of the default prefix, as taskchan writes them (taskchan/stores/keys.py)
KEYS = Keys("taskchan")
ARTIFACTS = ROOT / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A SQLite test database file of this pytest process's own.

    A file, not an in-memory database, so worker subprocesses share it (they
    find it through ``subprocess_env``'s TASKCHAN_TEST_DB); named by pid so two
    suites run at once in one checkout never delete each other's file.
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        test = db.setdefault("TEST", {})
        name = str(test.get("NAME") or ARTIFACTS / "test-db.sqlite3")
        test["NAME"] = f"{name}.{os.getpid()}"


def _own_redis():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _session_redis():
    yield from _own_redis()


@pytest.fixture
def redis_url(_session_redis, monkeypatch):
    """URL of an empty Redis; also exported as REDIS_URL for consumers and subprocesses."""
    redis_lib.Redis.from_url(_session_redis.url).flushall()
    monkeypatch.setenv("REDIS_URL", _session_redis.url)
    import tests.jobs

    tests.jobs._client = None
    return _session_redis.url


@pytest.fixture(scope="session")
def _session_redis_b():
    """A second server, for the sharding tests."""
    yield from _own_redis()


@pytest.fixture
def shard_urls(redis_url, _session_redis_b) -> list[str]:
    """Two empty Redis servers to shard taskchan channels over (the first is ``redis_url``)."""
    redis_lib.Redis.from_url(_session_redis_b.url).flushall()
    return [redis_url, _session_redis_b.url]


@pytest.fixture
def use_sharded_layer(shard_urls, settings):
    """This process's channel layer with taskchan channels sharded over two Redis servers."""
    settings.CHANNEL_LAYERS = layer_settings(*shard_urls)
    return shard_urls


@pytest.fixture(scope="session")
def _session_cluster():
    """A Redis Cluster of this pytest process's own: three masters, one replica each (about 3 s to start)."""
    cluster = RedisClusterServers()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(_session_cluster):
    """The session's Redis Cluster, emptied (each master flushed; its replica follows)."""
    wait_for(_session_cluster.healthy, timeout=30, message="the session cluster to be healthy")
    _session_cluster.flush()
    return _session_cluster


@pytest.fixture
def use_cluster_layer(cluster, redis_url, settings):
    """This process's channel layer with taskchan channels on the Redis Cluster (websockets on ``redis_url``)."""
    settings.CHANNEL_LAYERS = layer_settings(redis_url, taskchan_cluster=cluster.url)
    return cluster


@pytest.fixture
def redis_client(redis_url):
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def redis_server_factory():
    servers = []

    def make(**options) -> RedisServer:
        server = RedisServer(**options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def on_store(store, make_call):
    """Run one store coroutine from a synchronous test, closing the store's clients of that loop."""
    import asyncio

    async def main():
        try:
            return await make_call()
        finally:
            await store.aclose()

    return asyncio.run(main())


def lease_as(store, channel: str, consumer: str = "ghost-worker", count: int = 10) -> list:
    """Lease up to ``count`` messages of ``channel`` to ``consumer``, a worker that is not
    running (its leases lapse): the deliveries, through the store's public API."""

    async def lease():
        await store.prepare([channel])
        return await store.fetch([channel], consumer, count, 100)

    return on_store(store, lease)


def layer_settings(*hosts, **config) -> dict:
    """CHANNEL_LAYERS with taskchan's Redis layer on ``hosts`` (more than one: sharded), plus CONFIG keys."""
    return {"default": {"BACKEND": "taskchan.layers.RedisChannelLayer", "CONFIG": {"hosts": list(hosts), **config}}}


@pytest.fixture
def use_redis_layer(redis_url, settings):
    """Point this test process's channel layer (and so taskchan.send) at the test Redis."""
    settings.CHANNEL_LAYERS = layer_settings(redis_url)
    return redis_url


@pytest.fixture
def use_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}}


def done_records(client, key="t:done") -> list[tuple[str, int, int]]:
    """Parsed ``(message id, attempt, pid)`` records a test consumer wrote."""
    out = []
    for item in client.lrange(key, 0, -1):
        message_id, attempt, pid = item.split("|")
        out.append((message_id, int(attempt), int(pid)))
    return out


class Process:
    """A subprocess run from the repo root with its output in a file under test-artifacts/."""

    def __init__(self, command, env, name):
        self.log_path = ARTIFACTS / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(part) for part in command], cwd=ROOT, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        # SIGKILL ends a stopped (SIGSTOP) process too; no SIGCONT first, which
        # would let it run on for a moment.
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout=30) -> int:
        """Its exit status; past ``timeout`` an AssertionError with its log and every thread's stack."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGUSR2)  # tests/settings.py: faulthandler writes the stacks to the log
            time.sleep(1)
            raise AssertionError(
                f"{self.proc.args[2:]} still running after {timeout} s; its log and stacks:\n{self.output()[-20000:]}"
            ) from None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """End of the test: SIGKILL it if it still runs, and close its log."""
        if self.running:
            self.kill()
        self._log.close()


def subprocess_env(redis_url: str | None, **extra) -> dict:
    """Environment for a manage.py subprocess sharing this test's Redis and database."""
    from django.db import connection

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env["TASKCHAN_TEST_DB"] = str(connection.settings_dict["NAME"])
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def manage(request):
    """Factory: ``manage(["runworker", "taskchan.t.*"], redis_url=...)`` -> Process.

    Every process is SIGKILLed at the end of the test if still running.
    """
    processes: list[Process] = []

    def start(args, redis_url=None, name=None, **env) -> Process:
        command = [sys.executable, "manage.py", *args]
        proc = Process(command, subprocess_env(redis_url, **env), name or request.node.name[:60])
        processes.append(proc)
        return proc

    yield start
    for proc in processes:
        proc.close()


@pytest.fixture
def worker(manage, redis_url):
    """Factory: start ``runworker`` for the given channels on the test Redis."""

    def start(*channels, args=(), **env) -> Process:
        return manage(["runworker", *(channels or ("taskchan.t.*",)), *args], redis_url=redis_url, **env)

    return start


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_runserver(manage, redis_url=None):
    """``runserver`` on a free port (the in-memory layer unless ``redis_url``); returns (process, base url)."""
    port = free_port()
    proc = manage(["runserver", f"127.0.0.1:{port}", "--noreload"], redis_url=redis_url)

    def up():
        if not proc.running:
            raise AssertionError(f"runserver exited with {proc.proc.returncode}:\n{proc.output()}")
        return accepts(port)

    wait_for(up, timeout=STARTUP_TIMEOUT, message=f"runserver on port {port}")
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def devserver(manage):
    """A runserver subprocess on a free port with no REDIS_URL; yields (process, base url)."""
    return start_runserver(manage)
