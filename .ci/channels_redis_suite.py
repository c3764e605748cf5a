"""channels_redis's own test suite, run against taskchan's Redis layer (``make test-peers``).

taskchan.layers.RedisChannelLayer claims to be a drop-in replacement for
channels_redis's layer.  This checks it with channels_redis's tests, as
published in its sdist at the version installed here (the one pyproject.toml's
range chose): ``tests/test_core.py`` and ``tests/test_sentinel.py``, with
every ``RedisChannelLayer`` they build being taskchan's.

Nothing of channels_redis is kept in this repository: the sdist is downloaded
at run time into a temporary directory.  The tests' hard-coded servers
(``localhost:6379``, a sentinel on ``localhost:26379`` whose password is
``channels_redis``, master ``sentinel``) become a redis-server and a sentinel
this script starts on free ports, and stops.  Arguments are passed to pytest
(``-k group``); the exit status is pytest's.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SUITE = ("tests/test_core.py", "tests/test_sentinel.py")
SENTINEL_PASSWORD = "channels_redis"  # noqa: S105 - the one the suite sends
SENTINEL_MASTER = "sentinel"

#: in the work directory: swaps channels_redis's layer for taskchan's before the tests import it
CONFTEST = '''
import django
import pytest
from django.conf import settings

settings.configure()  # taskchan's layer reads TASKCHAN_* settings: their defaults
django.setup()

import channels_redis.core  # noqa: E402
from taskchan.layers import RedisChannelLayer  # noqa: E402

channels_redis.core.RedisChannelLayer = RedisChannelLayer


@pytest.fixture(autouse=True)
def _the_layer_is_taskchans(request):
    assert request.module.RedisChannelLayer is RedisChannelLayer, "the test did not get taskchan's layer"
'''

PYTEST_INI = """
[pytest]
addopts = -p no:django -p no:cacheprovider
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = 30
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start on port {port}")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)  # noqa: S603


def fetch_suite(version: str, work: Path) -> None:
    """Download channels_redis's sdist and take its test files (and its test requirements)."""
    pip("download", "--no-binary", ":all:", "--no-deps", f"channels-redis=={version}", "-d", str(work))
    (sdist,) = work.glob("channels_redis-*.tar.gz")
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            relative = member.name.split("/", 1)[-1]
            if relative in SUITE:
                (work / Path(relative).name).write_bytes(tar.extractfile(member).read())
    missing = [name for name in SUITE if not (work / Path(name).name).exists()]
    if missing:
        raise SystemExit(f"channels_redis {version}'s sdist has no {', '.join(missing)}")
    # Its own declared test requirements (pytest-asyncio, async-timeout, ...).
    pip("install", f"channels-redis[tests]=={version}")


def point_at(work: Path, redis_port: int, sentinel_port: int) -> None:
    """The suite's servers are ours: rewrite its addresses, and make sure none is left."""
    for name in SUITE:
        path = work / Path(name).name
        text = path.read_text()
        text = text.replace("redis://localhost:6379", f"redis://127.0.0.1:{redis_port}")
        text = re.sub(r"\(\s*\"localhost\"\s*,\s*26379\s*\)", f'("127.0.0.1", {sentinel_port})', text)
        if "6379" in text:
            # Never run against a server this run did not start (the suite flushes what it uses).
            raise SystemExit(f"{name} names a Redis this script does not rewrite")
        path.write_text(text)
    (work / "conftest.py").write_text(CONFTEST)
    (work / "pytest.ini").write_text(PYTEST_INI)


def start_servers(work: Path) -> tuple[list[subprocess.Popen], int, int]:
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis_port, sentinel_port = free_port(), free_port()
    master = subprocess.Popen(  # noqa: S603 - our own redis-server
        [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work), "--logfile", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(redis_port, "redis-server")
    config = work / "sentinel.conf"  # sentinel rewrites its config: in the work directory
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {work}\nrequirepass {SENTINEL_PASSWORD}\n"
        f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {redis_port} 1\n"
    )
    sentinel = subprocess.Popen(  # noqa: S603
        [redis_server, str(config), "--sentinel", "--logfile", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(sentinel_port, "redis sentinel")
    return [master, sentinel], redis_port, sentinel_port


def main(pytest_args: list[str]) -> int:
    version = importlib.metadata.version("channels-redis")
    work = Path(tempfile.mkdtemp(prefix="channels-redis-suite-"))
    servers: list[subprocess.Popen] = []
    try:
        fetch_suite(version, work)
        servers, redis_port, sentinel_port = start_servers(work)
        point_at(work, redis_port, sentinel_port)
        print(f"channels_redis {version}'s {' and '.join(SUITE)} against taskchan.layers.RedisChannelLayer", flush=True)
        tests = [Path(name).name for name in SUITE]
        command = [sys.executable, "-m", "pytest", "-q", *tests, *pytest_args]
        return subprocess.run(command, cwd=work, check=False).returncode  # noqa: S603
    finally:
        for server in servers:
            server.kill()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
