"""``manage.py runworker`` as a user runs it: a subprocess on a real Redis.

Patterns (and the shell's expansion of an unquoted one), refusals at the door,
burst mode, the line logged per finished job, concurrency, the prefetch bound,
SIGTERM, and plain (non-taskchan) channels served through the ASGI application.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import subprocess
import sys

import pytest
from channels.layers import get_channel_layer

import taskchan
from taskchan.stores.keys import GROUP
from tests.conftest import KEYS, ROOT, done_records, subprocess_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_STREAM = KEYS.stream("taskchan.t.slow")


def run_manage(*args, redis_url, timeout=60) -> subprocess.CompletedProcess:
    """Run ``manage.py ARGS`` to completion, keeping stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(redis_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def started_records(client):
    return done_records(client, "t:started")


def wait_serving(proc, timeout=30):
    """Wait until the worker logged that it serves its channels (it has prepared its groups)."""

    def serving():
        if not proc.running:
            raise AssertionError(f"worker exited with {proc.proc.returncode}:\n{proc.output()}")
        return " serving " in proc.output()

    wait_for(serving, timeout=timeout, message="the worker to start serving")


# -- patterns -----------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["taskchan.t.rec*", "taskchan.t.re?ord"])
def test_pattern_expands_to_the_matching_channel(pattern, use_redis_layer, redis_client, worker):
    message_id = taskchan.send("taskchan.t.record", {"n": 1})

    proc = worker(pattern, args=["--burst"])

    assert proc.wait(60) == 0, proc.output()
    assert [r[0] for r in done_records(redis_client)] == [message_id]
    assert done_records(redis_client)[0][2] == proc.pid
    # Only the matching channel is served (not taskchan.t.reject, .retry, ...).
    assert "serving taskchan.t.record (" in proc.output(), proc.output()


def test_pattern_matching_nothing_exits_non_zero_listing_known_channels(redis_url):
    result = run_manage("runworker", "taskchan.nope.*", redis_url=redis_url)

    assert result.returncode != 0
    assert "'taskchan.nope.*' matches no registered consumer" in result.stderr
    assert "Known taskchan channels:" in result.stderr
    for known in ("taskchan.demo", "taskchan.t.record", "taskchan.t.slow", "taskchan.t.flaky"):
        assert known in result.stderr, result.stderr
    assert " serving " not in result.stdout + result.stderr


def shell(command: str, cwd, redis_url) -> subprocess.CompletedProcess:
    """Run ``python manage.py COMMAND`` through bash from ``cwd``, as a user types it."""
    line = f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'manage.py'))} {command}"
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=subprocess_env(redis_url), capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )


def test_an_unquoted_pattern_the_shell_expanded_into_a_file_name_says_to_quote_it(redis_url, tmp_path):
    (tmp_path / "taskchan.log").write_text("a log file beside manage.py\n")

    result = shell("runworker taskchan.*", tmp_path, redis_url)  # the shell turns it into taskchan.log

    assert result.returncode != 0
    assert "'taskchan.log': is a file in this directory, not a channel" in result.stderr, result.stderr
    assert "the shell expanded an unquoted pattern" in result.stderr
    assert "Quote the pattern: python manage.py runworker 'taskchan.*'" in result.stderr
    assert " serving " not in result.stdout + result.stderr


def test_a_registered_channel_named_like_a_file_here_is_still_served(use_redis_layer, redis_client, tmp_path):
    (tmp_path / "taskchan.t.record").write_text("")
    message_id = taskchan.send("taskchan.t.record", {"n": 1})

    result = shell("runworker taskchan.t.record --burst", tmp_path, use_redis_layer)

    assert result.returncode == 0, result.stderr
    assert [r[0] for r in done_records(redis_client)] == [message_id]


def test_the_in_memory_layer_is_refused_with_what_to_do_instead():
    # No REDIS_URL: the reference project's layer is the in-memory one, whose
    # messages only the sending process can see.
    result = run_manage("runworker", "taskchan.t.record", redis_url=None, timeout=30)

    assert result.returncode != 0
    assert "is the in-memory layer" in result.stderr
    assert "RedisChannelLayer" in result.stderr and "runserver" in result.stderr
    assert " serving " not in result.stdout + result.stderr


def test_concurrency_zero_is_refused(redis_url):
    result = run_manage("runworker", "taskchan.t.record", "--concurrency", "0", redis_url=redis_url)

    assert result.returncode == 2  # argparse's usage error
    assert "--concurrency" in result.stderr
    assert "'0'" in result.stderr
    assert " serving " not in result.stdout + result.stderr


# -- burst --------------------------------------------------------------------


def test_burst_waits_for_delayed_and_retried_messages_then_exits_zero(
    use_redis_layer, redis_client, worker
):
    now_id = taskchan.send("taskchan.t.record", {"when": "now"})
    delayed_id = taskchan.send("taskchan.t.record", {"when": "later"}, delay=1)
    flaky_id = taskchan.send("taskchan.t.flaky", {"succeed_on": 3})

    proc = worker("taskchan.t.record", "taskchan.t.flaky", args=["--burst"])

    assert proc.wait(60) == 0, proc.output()
    records = {r[0]: r for r in done_records(redis_client)}
    assert set(records) == {now_id, delayed_id, flaky_id}
    assert len(done_records(redis_client)) == 3
    assert records[flaky_id][1] == 3  # failed on attempts 1 and 2, succeeded on 3
    assert {r[2] for r in records.values()} == {proc.pid}
    # Nothing is left queued, scheduled or leased.
    for channel in ("taskchan.t.record", "taskchan.t.flaky"):
        assert redis_client.xlen(KEYS.stream(channel)) == 0
        assert redis_client.zcard(KEYS.scheduled(channel)) == 0


# -- one log line per finished job ------------------------------------------------


def test_verbosity_two_logs_each_finished_attempt_with_its_duration(use_redis_layer, worker):
    ok_id = taskchan.send("taskchan.t.record", {"n": 1})
    flaky_id = taskchan.send("taskchan.t.flaky", {"succeed_on": 2})

    proc = worker("taskchan.t.record", "taskchan.t.flaky", args=["--burst", "-v", "2"])

    assert proc.wait(60) == 0, proc.output()
    out = proc.output()
    assert re.search(
        rf" DEBUG taskchan\.jobs done channel=taskchan\.t\.record message={ok_id} attempt=1 duration=\d+\.\d\dms$",
        out, re.MULTILINE,
    ), out
    assert re.search(
        rf"taskchan\.jobs failed \(RuntimeError\) channel=taskchan\.t\.flaky message={flaky_id} attempt=1 ", out
    ), out
    assert re.search(rf"taskchan\.jobs done channel=taskchan\.t\.flaky message={flaky_id} attempt=2 ", out), out
    assert out.count("taskchan.jobs ") == 3


def test_default_verbosity_logs_no_line_per_job(use_redis_layer, redis_client, worker):
    taskchan.send("taskchan.t.record", {"n": 1})

    proc = worker("taskchan.t.record", args=["--burst"])

    assert proc.wait(60) == 0, proc.output()
    assert len(done_records(redis_client)) == 1
    assert "taskchan.jobs" not in proc.output()


# -- concurrency and prefetch -------------------------------------------------


def test_concurrency_four_runs_four_slow_jobs_side_by_side(use_redis_layer, redis_client, worker):
    ids = {taskchan.send("taskchan.t.slow", {"seconds": 1}) for _ in range(4)}

    proc = worker("taskchan.t.slow", args=["--concurrency", "4", "--burst"])

    def counts():
        # One atomic read of both lists: how many started, how many finished.
        pipe = redis_client.pipeline(transaction=True)
        pipe.llen("t:started")
        pipe.llen("t:done")
        started, done = pipe.execute()
        return (started, done) if started == 4 or done else None

    # All four jobs started before the first one finished: they ran side by
    # side in one process (channels' own worker runs one message at a time).
    assert wait_for(counts, timeout=30, interval=0.01, message="the slow jobs to start") == (4, 0)
    assert proc.wait(60) == 0, proc.output()
    assert {r[0] for r in done_records(redis_client)} == ids
    assert {r[2] for r in started_records(redis_client)} == {proc.pid}


def test_prefetch_bounds_the_messages_a_worker_leases(use_redis_layer, redis_client, worker):
    ids = {taskchan.send("taskchan.t.slow", {"seconds": 0.1}) for _ in range(20)}

    proc = worker("taskchan.t.slow", args=["--concurrency", "1", "--prefetch", "2", "--burst"])

    def sample():
        """(leased, unfinished leased, stream length), read in one transaction."""
        pipe = redis_client.pipeline(transaction=True)
        pipe.xpending(SLOW_STREAM, GROUP)
        pipe.xlen(SLOW_STREAM)
        pipe.llen("t:done")
        pending, length, done = pipe.execute()
        # An ack removes the entry from the stream, so 20 - length were acked;
        # done - acked finished but still wait for their batched ack.  Those
        # are leased too, for as long as the ack takes (a busy Redis makes
        # that long), but no longer count against the bound.
        awaiting_ack = done - (20 - length)
        return pending["pending"], pending["pending"] - awaiting_ack, length

    samples = []
    while proc.running:
        try:
            samples.append(sample())
        except Exception as exc:  # the group does not exist until the worker prepared it
            if "NOGROUP" not in str(exc):
                raise
    assert proc.wait(60) == 0, proc.output()

    assert len(done_records(redis_client)) == 20
    assert {r[0] for r in done_records(redis_client)} == ids
    # Never more than concurrency (1) + prefetch (2) unfinished messages leased ...
    assert max(unfinished for _, unfinished, _ in samples) <= 1 + 2, samples
    # ... and it did lease ahead, while the rest stayed queued in Redis.
    assert max(unfinished for _, unfinished, _ in samples) >= 2, samples
    assert any(length - leased >= 10 for leased, _, length in samples if leased), samples


# -- SIGTERM ------------------------------------------------------------------


def test_sigterm_stops_an_idle_worker_with_exit_zero(use_redis_layer, worker):
    proc = worker("taskchan.t.record")
    wait_serving(proc)

    proc.signal(signal.SIGTERM)

    assert proc.wait(15) == 0, proc.output()
    assert "stopped: 0 processed, 0 failed" in proc.output()


def test_sigterm_after_grace_exits_and_the_job_runs_again_elsewhere(
    use_redis_layer, redis_client, worker
):
    message_id = taskchan.send("taskchan.t.slow", {"seconds": 4})
    first = worker("taskchan.t.slow", args=["--grace", "1"])
    wait_for(lambda: redis_client.llen("t:started") == 1, timeout=30, message="the job to start")

    first.signal(signal.SIGTERM)

    # The worker does not wait out the 4 s job: it exits once the 1 s grace is over ...
    assert first.wait(15) == 0, first.output()
    assert redis_client.llen("t:done") == 0, "the job finished before the worker exited"
    assert "still running after" in first.output(), first.output()
    # ... leaving the message leased, not acked: it is not lost.
    assert redis_client.xpending(SLOW_STREAM, GROUP)["pending"] == 1

    # A second worker (1 s lease, so the abandoned lease lapses quickly) runs it to completion.
    second = worker("taskchan.t.slow", args=["--burst"], TASKCHAN_VISIBILITY_TIMEOUT=1)

    assert second.wait(60) == 0, second.output()
    assert done_records(redis_client) == [(message_id, 2, second.pid)]
    assert started_records(redis_client) == [
        (message_id, 1, first.pid),
        (message_id, 2, second.pid),
    ]
    assert redis_client.xlen(SLOW_STREAM) == 0


# -- plain channels -----------------------------------------------------------


async def test_plain_channel_is_served_through_the_asgi_application(use_redis_layer, worker):
    layer = get_channel_layer()
    reply_channel = await layer.new_channel()
    await layer.send(
        "demo-plain", {"type": "demo.ping", "text": "ping", "reply_channel": reply_channel}
    )

    proc = worker("demo-plain")

    reply = await asyncio.wait_for(layer.receive(reply_channel), 30)
    assert reply == {"type": "demo.pong", "text": "ping", "worker_pid": proc.pid}
    assert "serving plain channels demo-plain" in proc.output()
    assert proc.running, proc.output()
