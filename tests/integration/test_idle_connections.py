"""An idle websocket and an idle plain-channel worker stay up on the Redis layer.

The fault: channels_redis's receive() blocks in Redis for 5 s (BZPOPMIN) and
redis-py 8 gives up reading a socket after 5 s by default, so the two met: an
idle ``/chat/`` websocket closed with 1011 after 10-15 s and ``runworker
demo-plain`` died with "Timeout reading from ...".  taskchan's layer now gives
channels_redis's connections a socket timeout longer than its blocking read
(``taskchan.redis_layer.LAYER_SOCKET_TIMEOUT``), and a runworker whose plain
channels' worker dies exits instead of staying up deaf to them.

How the test hits it: a real daphne and a real ``runworker demo-plain`` on the
test's Redis; a websocket is opened and left idle for 65 s; then the echo must
answer on that same connection, and the same worker process must answer a
ping on the plain channel.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from channels.layers import get_channel_layer
from websockets.sync.client import connect

from tests.conftest import Process, accepts, free_port, subprocess_env, wait_for

IDLE_SECONDS = 65


@pytest.fixture
def daphne_on_redis(redis_url, request):
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        subprocess_env(redis_url), f"{request.node.name[:40]}-daphne",
    )

    def up():
        assert proc.running, proc.output()
        return accepts(port)

    wait_for(up, timeout=30, message="daphne")
    yield proc, port
    proc.close()


@pytest.mark.timeout(IDLE_SECONDS + 120)
def test_an_idle_websocket_and_plain_channel_worker_stay_up_for_a_minute(
    use_redis_layer, daphne_on_redis, worker
):
    daphne, port = daphne_on_redis
    plain = worker("demo-plain")
    wait_for(lambda: "serving plain channels demo-plain" in plain.output(), timeout=30, message="plain worker")

    with connect(f"ws://127.0.0.1:{port}/chat/", origin=f"http://127.0.0.1:{port}", open_timeout=10) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "You said: before"
        time.sleep(IDLE_SECONDS)
        ws.send("after a minute")
        assert ws.recv(timeout=10) == "You said: after a minute"

    async def ping():
        layer = get_channel_layer()
        reply_channel = await layer.new_channel()
        await layer.send("demo-plain", {"type": "demo.ping", "text": "still there?", "reply_channel": reply_channel})
        return await asyncio.wait_for(layer.receive(reply_channel), 30)

    assert plain.running, plain.output()[-3000:]
    assert asyncio.run(ping()) == {"type": "demo.pong", "text": "still there?", "worker_pid": plain.pid}
    assert "Timeout reading" not in daphne.output() + plain.output()
