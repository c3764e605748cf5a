"""Private servers for the tests and the benchmark: a free port and a redis-server of one's own.

Plain functions and a class, no pytest: ``tests/conftest.py`` builds its
fixtures on them and ``bench/`` (``python -m bench``) starts its Redis with the
same class, so both start Redis the same way and neither ever touches the
Redis on 6379.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

import redis as redis_lib

#: the machine's shared Redis: never handed out, whatever the OS would allow
SHARED_REDIS_PORT = 6379
#: seconds a redis-server gets to answer PING after it is started
REDIS_START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never 6379)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != SHARED_REDIS_PORT:
            return port


#: seconds a server process (runserver, daphne) may take to accept connections: Django's
#: start-up takes seconds on a loaded two-core machine; one that exits fails at once instead
STARTUP_TIMEOUT = 90


def wait_for(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns truthy; raise AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def _popen(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class RedisServer:
    """A redis-server process of one's own: a free port, a data dir, no RDB snapshots.

    ``appendonly`` turns AOF on with ``appendfsync always`` (a SIGKILL loses
    nothing that was acknowledged); ``password`` sets ``requirepass``.
    ``workdir`` holds the data (a temp dir removed by ``stop()`` when not
    given) and ``logfile`` the server's log ("" : none).  ``spawn`` starts the
    command and returns its Popen: the benchmark passes one that starts it in
    a process group of its own.  ``start()`` again after ``kill()`` restarts it
    on the same port and data dir.
    """

    def __init__(
        self,
        appendonly: bool = False,
        password: str | None = None,
        *,
        workdir: str | None = None,
        logfile: str = "",
        binary: str | None = None,
        spawn: Callable[[list[str]], subprocess.Popen] = _popen,
    ):
        self.port = self.pick_port()
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="taskchan-redis-")
        self.appendonly = appendonly
        self.password = password
        self.logfile = logfile
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.spawn = spawn
        self.proc: subprocess.Popen | None = None
        self.start()

    def pick_port(self) -> int:
        return free_port()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--daemonize", "no", "--logfile", self.logfile]  # fmt: skip
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> None:
        """Start it and wait until it answers PING (AssertionError if it does not).

        The first start tries another free port if the server exits at once:
        something else may have bound the port since ``free_port()`` chose it.
        A restart keeps its port (the tests' clients point there).
        """
        first = self.proc is None
        for attempt in range(3 if first else 1):
            if attempt:
                self.port = self.pick_port()
            self.proc = self.spawn(self.command())
            client = redis_lib.Redis(port=self.port, password=self.password)
            try:
                wait_for(
                    self._answers(client),
                    timeout=REDIS_START_TIMEOUT,
                    message=f"redis-server on {self.port}",
                )
                return
            except AssertionError:
                if self.proc.poll() is None or attempt == (2 if first else 0):
                    raise
            finally:
                client.close()

    def _answers(self, client) -> Callable[[], bool]:
        def answers() -> bool:
            if self.proc.poll() is not None:
                where = f"; see its log {self.logfile}" if self.logfile else ""
                raise AssertionError(
                    f"redis-server on port {self.port} exited with {self.proc.returncode}{where}"
                )
            try:
                return client.ping()
            except redis_lib.RedisError:
                return False

        return answers

    def version(self) -> str:
        client = redis_lib.Redis(port=self.port, password=self.password)
        try:
            return client.info("server").get("redis_version", "?")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL it (a crash: with AOF on, what it acknowledged survives a ``start()``)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


#: a cluster node's bus port is its port + this; both must be free, and below 65536
CLUSTER_BUS_OFFSET = 10000
#: milliseconds a cluster master may be silent before its replica takes over
#: (short, so the failover tests wait about 2-3 s for the promotion)
CLUSTER_NODE_TIMEOUT_MS = 1000


def free_cluster_port() -> int:
    """A free port below 55536 whose bus port (+ 10000) is free too."""
    while True:
        port = free_port()
        if port >= 65536 - CLUSTER_BUS_OFFSET:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
        except OSError:
            continue
        return port


class ClusterNode(RedisServer):
    """One redis-server of a test cluster: ``--cluster-enabled`` with its own nodes file."""

    def pick_port(self) -> int:
        return free_cluster_port()

    def command(self) -> list[str]:
        return [*super().command(), "--cluster-enabled", "yes",
                "--cluster-config-file", f"{self.dir}/nodes.conf",
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                # a replica's first sync at once, not after the default 5 s wait for more replicas
                "--repl-diskless-sync-delay", "0"]  # fmt: skip


class RedisClusterServers:
    """A Redis Cluster of one's own: ``masters`` masters with ``replicas`` replicas each, on loopback.

    Started with ``redis-cli --cluster create`` and returned once every node
    reports ``cluster_state:ok`` and every master has its replicas connected.
    ``url`` is any node's (the first); ``stop()`` kills every node and removes
    their data dirs.
    """

    def __init__(self, masters: int = 3, replicas: int = 1):
        self.nodes = [ClusterNode() for _ in range(masters * (1 + replicas))]
        self.replicas = replicas
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
        )
        wait_for(self.healthy, timeout=60, message="the test cluster to be ready")

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def client(self, node: ClusterNode) -> redis_lib.Redis:
        return redis_lib.Redis(port=node.port, decode_responses=True, socket_timeout=2)

    def alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    def masters(self) -> list[ClusterNode]:
        """The live nodes that are masters now."""
        out = []
        for node in self.alive():
            with self.client(node) as c:
                if c.info("replication").get("role") == "master":
                    out.append(node)
        return out

    def healthy(self) -> bool:
        """Every live node says the cluster is ok and every live master has its replicas connected."""
        try:
            for node in self.alive():
                with self.client(node) as c:
                    info = c.cluster("info")
                    if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_assigned", 0)) != 16384:
                        return False
                    replication = c.info("replication")
                    online = [v for k, v in replication.items() if k.startswith("slave") and k[5:].isdigit()
                              and v.get("state") == "online"]
                    lacking = replication.get("role") == "master" and len(online) < self.replicas
                    # A master holding no slots (an old master come back) needs no replica.
                    if lacking and self.slots_of(c):
                        return False
            return True
        except redis_lib.RedisError:
            return False

    @staticmethod
    def slots_of(client) -> list[tuple[int, int]]:
        """The slot ranges the node behind ``client`` serves as master."""
        me = client.cluster("myid")
        return [(start, end) for start, end, master, *_ in client.cluster("slots") if master[2] == me]

    def serving(self, key: str) -> ClusterNode | None:
        """The live master that serves ``key``'s slot now; None in the midst of a failover."""
        for node in self.masters():
            with self.client(node) as c:
                slot = c.cluster("keyslot", key)
                if any(start <= slot <= end for start, end in self.slots_of(c)):
                    return node
        return None

    def master_of(self, key: str) -> ClusterNode:
        """``serving(key)``, which must be a node."""
        node = self.serving(key)
        assert node is not None, f"no live master serves {key!r}"
        return node

    def flush(self) -> None:
        for node in self.masters():
            with self.client(node) as c:
                c.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
