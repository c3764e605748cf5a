"""The websocket echo consumer (the seed's first example).

First in-process through channels' ``WebsocketCommunicator`` on the project's
ASGI application (routing, origin check, close codes), then through a real
``daphne`` process with the ``websockets`` client, as a browser would reach it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import websockets.exceptions
from channels.testing import WebsocketCommunicator
from websockets.sync.client import connect

from project.consumers import CLOSE_NOT_FOUND, CLOSE_UNSUPPORTED_DATA
from tests.conftest import ARTIFACTS, ROOT, accepts, free_port, subprocess_env, wait_for
from tests.servers import STARTUP_TIMEOUT

GOOD_ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture
def application():
    from project.asgi import application

    return application


def communicator(application, path="/chat/", origin=GOOD_ORIGIN):
    headers = [(b"host", b"127.0.0.1")]
    if origin is not None:
        headers.append(origin)
    return WebsocketCommunicator(application, path, headers=headers)


# -- in-process: WebsocketCommunicator ---------------------------------------


async def test_text_frame_is_echoed_back(application):
    client = communicator(application)
    connected, _ = await client.connect()
    assert connected

    await client.send_to(text_data="hello")

    assert await client.receive_from() == "You said: hello"
    await client.disconnect()


async def test_several_frames_are_each_echoed_in_order(application):
    client = communicator(application)
    connected, _ = await client.connect()
    assert connected
    words = ["one", "two", "three", "ünïcødé ✓"]

    for word in words:
        await client.send_to(text_data=word)
    replies = [await client.receive_from() for _ in words]

    assert replies == [f"You said: {word}" for word in words]
    assert await client.receive_nothing()
    await client.disconnect()


async def test_unknown_path_is_closed_with_4404(application):
    client = communicator(application, path="/other/")

    connected, _ = await client.connect()
    # NotFoundConsumer accepts so that the close code reaches the client.
    assert connected
    closed = await client.receive_output()

    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}
    assert CLOSE_NOT_FOUND == 4404


async def test_wrong_origin_is_refused(application):
    client = communicator(application, origin=(b"origin", b"http://evil.example.com"))

    connected, _ = await client.connect()

    assert not connected


async def test_missing_origin_is_refused(application):
    client = communicator(application, origin=None)

    connected, _ = await client.connect()

    assert not connected


async def test_binary_frame_closes_with_4415(application):
    client = communicator(application)
    connected, _ = await client.connect()
    assert connected

    await client.send_to(bytes_data=b"\x00\x01binary")
    closed = await client.receive_output()

    assert closed == {"type": "websocket.close", "code": CLOSE_UNSUPPORTED_DATA}
    assert CLOSE_UNSUPPORTED_DATA == 4415


# -- a real daphne process -----------------------------------------------------




class Daphne:
    """``daphne -b 127.0.0.1 -p PORT project.asgi:application`` with its output under test-artifacts/."""

    def __init__(self, name: str):
        self.port = free_port()
        self.log_path = ARTIFACTS / f"{name}-daphne-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "project.asgi:application",
            ],
            cwd=ROOT,
            env=subprocess_env(None),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"daphne exited with {self.proc.returncode}:\n{self.output()}")
            return accepts(self.port)

        wait_for(ready, timeout=STARTUP_TIMEOUT, message=f"daphne on port {self.port}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def daphne(request):
    # One daphne for the module: its tests open their own websockets and change nothing it holds.
    server = Daphne(request.node.name[:60])
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def ws_connect(server: Daphne, path: str, origin: str | None = None):
    return connect(
        f"ws://127.0.0.1:{server.port}{path}",
        origin=origin or f"http://127.0.0.1:{server.port}",
        open_timeout=10,
        close_timeout=5,
    )


def test_daphne_serves_the_echo(daphne):
    with ws_connect(daphne, "/chat/") as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "You said: hello"
        ws.send("again")
        assert ws.recv(timeout=10) == "You said: again"


def test_daphne_closes_an_unknown_path_with_4404(daphne):
    with (
        ws_connect(daphne, "/other/") as ws,
        pytest.raises(websockets.exceptions.ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_NOT_FOUND


def test_daphne_refuses_a_foreign_origin(daphne):
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        ws_connect(daphne, "/chat/", origin="http://evil.example.com")

    assert refused.value.response.status_code == 403
