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
        self.port = free_port()
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="taskchan-redis-")
        self.appendonly = appendonly
        self.password = password
        self.logfile = logfile
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.spawn = spawn
        self.proc: subprocess.Popen | None = None
        self.start()

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
                self.port = free_port()
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
