"""Garbage written straight into a stream never deafens a worker.

How this design handles it: the store reads with ``surrogateescape`` (bytes
that are not UTF-8 do not fail the reply), ``envelope.decode`` raises only
``MalformedEnvelope`` for anything it cannot use (too deep, wrong types,
numbers no column holds, lone surrogates), and the worker dead-letters such an
entry as *malformed* (``deadletter.record_malformed``: the raw text kept, bytes
that are not UTF-8 shown as ``\\xNN``) and goes on.  A channel whose key has
the wrong type is set aside with an error naming it (``quarantine.py``); the
others go on.  A loop or thread that dies anyway ends the process with status
70 (``lifeline.py``), so a supervisor restarts it.

How the tests hit it: each kind of garbage is XADDed to ``taskchan.t.record``
in front of good messages, and one long-running worker process
(``--concurrency 2``) must run every good message, dead-letter the garbage and
still be running.  The same garbage leased to a dead worker comes back through
the reclaim path (the upkeep loop).  Then a key of the wrong type, a consumer
that raises SystemExit and a loop with a bug.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis as redis_lib

import taskchan
from taskchan.deadletter import malformed_id
from taskchan.exceptions import StoreRefused
from taskchan.models import FailedMessage
from taskchan.stores.keys import GROUP
from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import KEYS, counts, pending, wait_exit

pytestmark = pytest.mark.django_db(transaction=True)

CH = "taskchan.t.record"


def garbage_for(channel: str) -> dict[str, tuple[dict, str]]:
    """kind -> (stream entry fields, a phrase of its dead letter's error), for ``channel``."""

    def forged(**fields) -> bytes:
        envelope = {"v": 1, "id": "forged-" + "-".join(sorted(fields)), "ch": channel, "c": {"x": 1}, **fields}
        return json.dumps(envelope).encode()

    return {
        "deep-json": ({"m": b"[" * 100_000 + b"]" * 100_000}, "nested too deeply"),
        "string-time": ({"m": forged(t="yesterday")}, "send time"),
        "non-utf8": ({"m": b'\xff\xfe{"v": 1, \x80}'}, "not UTF-8"),
        "huge-numbers": ({"m": forged(n=2**40, ma=10**20)}, "attempt count"),
        "huge-max-attempts": ({"m": forged(ma=2**31)}, "max_attempts"),
        "long-reply-channel": ({"m": forged(rc="r" * 300)}, "reply channel"),
        "lone-surrogate": ({"m": forged(c={"a": "\ud800"})}, "lone surrogate"),
        "bad-errors": ({"m": forged(e=[1, {"at": 1e20}])}, "errors"),
        "unexpected-fields": ({"payload": b"\xff", "other": b"x"}, "one field"),
    }


GARBAGE = garbage_for(CH)


@pytest.fixture
def raw_client(redis_url):
    client = redis_lib.Redis.from_url(redis_url)  # bytes in, bytes out: garbage as it is
    yield client
    client.close()


def assert_dead_lettered(entry_id: bytes, phrase: str) -> FailedMessage:
    row = wait_for(
        lambda: FailedMessage.objects.filter(message_id=malformed_id(CH, entry_id.decode())).first(),
        timeout=30, message=f"the dead letter of {entry_id!r}",
    )
    assert row.reason == FailedMessage.Reason.MALFORMED
    assert row.content is None
    assert phrase in row.last_error, row.last_error
    assert row.raw and "\x00" not in row.raw
    row.raw.encode("utf-8")  # shown safely: valid UTF-8
    return row


def serve_and_check(worker, redis_client, good: list[str], **env):
    proc = worker(CH, args=["--concurrency", "2"], **env)
    wait_for(
        lambda: len(done_records(redis_client)) >= len(good) or not proc.running,
        timeout=60, message="the good messages",
    )
    assert proc.running, proc.output()[-4000:]
    # More work after the garbage: the same process still serves the channel.
    later = [taskchan.send(CH, {"later": n}) for n in range(3)]
    wait_for(lambda: len(done_records(redis_client)) >= len(good) + 3, timeout=30, message="later messages")
    records = done_records(redis_client)
    assert counts(records) == dict.fromkeys(good + later, 1)
    assert {pid for _id, _attempt, pid in records} == {proc.pid}
    assert proc.running, proc.output()[-4000:]
    assert "Traceback" not in proc.output() or "dead-lettered" in proc.output()
    return proc


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_in_a_stream_is_dead_lettered_and_every_good_message_runs(
    kind, use_redis_layer, redis_client, raw_client, worker
):
    fields, phrase = GARBAGE[kind]
    good = [taskchan.send(CH, {"n": n}) for n in range(2)]
    entry_id = raw_client.xadd(KEYS.stream(CH), fields)
    good += [taskchan.send(CH, {"n": n}) for n in range(2, 6)]

    proc = serve_and_check(worker, redis_client, good)

    row = assert_dead_lettered(entry_id, phrase)
    if kind == "non-utf8":
        assert row.raw.startswith("\\xff\\xfe{")  # the bytes, spelled out
    wait_for(lambda: not pending(redis_client, CH), timeout=10, message="nothing leased")
    assert redis_client.xlen(KEYS.stream(CH)) == 0
    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()[-3000:]


def test_garbage_reclaimed_from_a_dead_worker_does_not_stop_the_upkeep_loop(
    use_redis_layer, redis_client, raw_client, worker
):
    stream = KEYS.stream(CH)
    raw_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entries = {raw_client.xadd(stream, fields): phrase for fields, phrase in GARBAGE.values()}
    # A worker that died holding them all: its leases lapse after 1 s.
    raw_client.xreadgroup(GROUP, "dead-worker", {stream: ">"}, count=100)
    good = [taskchan.send(CH, {"n": n}) for n in range(5)]

    proc = serve_and_check(worker, redis_client, good, TASKCHAN_VISIBILITY_TIMEOUT=1)

    for entry_id, phrase in entries.items():
        assert_dead_lettered(entry_id, phrase)
    wait_for(lambda: not pending(redis_client, CH), timeout=15, message="every lapsed lease settled")
    # The upkeep loop still runs: the worker still heartbeats.
    beat = redis_client.zscore(KEYS.workers, next(w for w in redis_client.zrange(KEYS.workers, 0, -1)))
    wait_for(lambda: redis_client.zscore(KEYS.workers, redis_client.zrange(KEYS.workers, 0, -1)[0]) > beat,
             timeout=15, message="a later heartbeat")
    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()[-3000:]


def test_a_key_of_the_wrong_type_stops_its_own_channel_only(use_redis_layer, redis_client, worker):
    broken_stream, broken_schedule = "taskchan.t.retry", "taskchan.t.async"
    redis_client.set(KEYS.stream(broken_stream), "not a stream")
    taskchan.send(broken_schedule, {"n": 0})
    redis_client.set(KEYS.scheduled(broken_schedule), "not a sorted set")
    good = [taskchan.send(CH, {"n": n}) for n in range(5)]

    proc = worker(CH, broken_stream, broken_schedule, args=["--concurrency", "2"])

    wait_for(lambda: len(done_records(redis_client)) >= 5 or not proc.running, timeout=60, message="good ones")
    assert proc.running, proc.output()[-4000:]
    later = taskchan.send(CH, {"later": True})
    wait_for(lambda: later in counts(done_records(redis_client)), timeout=30, message="a later message")
    assert set(counts(done_records(redis_client))) == {*good, later}
    output = wait_for(lambda: "taskchan.t.async cannot be read" in (out := proc.output()) and out, timeout=15,
                      message="the error naming the channel")
    assert (
        f"channel {broken_stream} cannot be read: the Redis key '{KEYS.stream(broken_stream)}' holds a string, "
        "not a stream" in output
    )
    assert f"'{KEYS.scheduled(broken_schedule)}' holds a string, not a zset" in output

    def registry_entry():
        infos = [json.loads(redis_client.get(KEYS.worker(w)) or "{}") for w in redis_client.zrange(KEYS.workers, 0, -1)]
        return next((i for i in infos if i.get("pid") == proc.pid and len(i.get("unreadable", {})) == 2
                     and i.get("last_finished")), None)

    info = wait_for(registry_entry, timeout=15, message="the registry entry listing both channels")
    assert set(info["unreadable"]) == {broken_stream, broken_schedule}
    assert info["last_finished"] >= info["started"]
    # Quiet: the error is not repeated on every read.
    time.sleep(2)
    assert proc.output().count(f"channel {broken_stream} cannot be read") == 1
    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()[-3000:]


def test_garbage_at_the_cancel_markers_key_deafens_nothing(use_redis_layer, redis_client, worker):
    """P:x is read with every fetch: a string there must not stop the reads (nor the lease renewals)."""
    redis_client.set(KEYS.cancelled, "not a sorted set")
    good = [taskchan.send(CH, {"n": n}) for n in range(5)]
    proc = worker(CH, args=["--concurrency", "2"])
    wait_for(lambda: len(done_records(redis_client)) >= 5 or not proc.running, timeout=60, message="good ones")
    later = taskchan.send(CH, {"later": True})
    wait_for(lambda: later in counts(done_records(redis_client)), timeout=30, message="a later message")
    assert set(counts(done_records(redis_client))) == {*good, later}
    assert proc.running and proc.output().count("is not a sorted set of cancel markers") == 1, proc.output()[-3000:]
    with pytest.raises(StoreRefused, match="WRONGTYPE"):
        taskchan.cancel(later)  # the sender learns of the garbage too
    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()[-3000:]


# -- a worker that cannot work exits -----------------------------------------------------


def test_a_job_thread_that_dies_ends_the_process_with_status_70(use_redis_layer, worker):
    proc = worker("taskchan.t.exit", "taskchan.t.record")
    taskchan.send("taskchan.t.exit", {})

    assert wait_exit(proc, 30) == 70, proc.output()[-3000:]
    output = proc.output()
    assert "job thread taskchan-job-0 died (SystemExit: a consumer called sys.exit())" in output
    assert "exiting with status 70 so that the supervisor restarts this worker" in output


def test_a_loop_that_dies_ends_the_process_with_status_70(use_redis_layer, worker):
    started = time.monotonic()
    proc = worker(CH, TASKCHAN_TEST_BREAK_LOOP="maintenance")

    assert wait_exit(proc, 30) == 70, proc.output()[-3000:]
    assert time.monotonic() - started < 25
    output = proc.output()
    assert "loop taskchan-maintenance died (RuntimeError: a bug in the maintenance loop" in output
    assert "Traceback" in output  # why, for whoever reads the log
