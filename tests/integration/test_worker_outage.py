"""A worker whose Redis goes away backs off quietly and comes back by itself.

How this design handles it: every loop of the worker reports a failed Redis
call to the host's ``Outage`` (``taskchan/worker/outage.py``), which answers how long
to wait (the time the host has been down, from 0.1 s up to 5 s) and logs one
line when the host stops answering, one per backoff step and one when it
answers again, not one per failed call.

How the test hits it: a worker on a redis-server of the test's own (AOF on)
is serving; the server is killed for 12 s, then started again on the same
port; a job sent afterwards is run by the same worker process.
"""

from __future__ import annotations

import time

import pytest
import redis as redis_lib

import taskchan
from tests.conftest import KEYS, done_records, layer_settings, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_SECONDS = 12


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]


def test_a_worker_backs_off_from_a_redis_that_is_down_with_a_line_per_step(
    redis_server_factory, settings, manage
):
    server = redis_server_factory(appendonly=True)
    settings.CHANNEL_LAYERS = layer_settings(server.url)
    client = redis_lib.Redis.from_url(server.url, decode_responses=True)
    proc = manage(["runworker", "taskchan.t.record", "taskchan.t.slow"], redis_url=server.url)
    wait_for(lambda: client.zcard(KEYS.workers), timeout=30, message="worker registered")
    before = len(warnings_in(proc.output()))

    server.kill()
    time.sleep(DOWN_SECONDS)
    during = warnings_in(proc.output())[before:]
    server.start()
    message_id = taskchan.send("taskchan.t.record", {"n": 1})
    wait_for(lambda: done_records(client), timeout=30, message="the job sent after the outage")

    # The old worker wrote about ten lines a second (each loop, each attempt).
    assert 1 <= len(during) <= 12, "\n".join(during)
    assert "does not answer" in during[0]
    assert any("next try in 5.0 s" in line for line in during), "\n".join(during)
    assert proc.running, proc.output()[-3000:]
    assert done_records(client) == [(message_id, 1, proc.pid)]
    back = wait_for(
        lambda: [line for line in proc.output().splitlines() if "answers again after" in line],
        timeout=10, message="the line saying Redis is back",
    )
    assert len(back) == 1, back
    client.close()
