"""Consumers the tests use. Each records what it did in the test Redis
(``REDIS_URL``), so a test in another process can count every message.

Records: list ``t:done`` gets ``"<message id>|<attempt>|<pid>"`` per successful
run; ``t:started`` the same when a job starts.
"""

import asyncio
import os
import signal
import time

import redis

import taskchan

_client = None


def rec() -> redis.Redis:
    global _client
    if _client is None:
        # TASKCHAN_RECORD_URL: records on a Redis apart from the store's (the chaos soak restarts that one)
        url = os.environ.get("TASKCHAN_RECORD_URL") or os.environ["REDIS_URL"]
        _client = redis.Redis.from_url(url, decode_responses=True)
    return _client


def _mark(key: str, message) -> None:
    rec().rpush(key, f"{message.id}|{message.attempt}|{os.getpid()}")


@taskchan.consumer("taskchan.t.record", max_attempts=3)
def record(message):
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.slow", max_attempts=5)
def slow(message):
    """Sleeps content["seconds"]; marks start and end."""
    _mark("t:started", message)
    time.sleep(float(message.content.get("seconds", 1)))
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.flaky", max_attempts=4, backoff=lambda state: 0.05)
def flaky(message):
    """Fails until attempt content["succeed_on"]."""
    if message.attempt < message.content.get("succeed_on", 2):
        raise RuntimeError(f"flaky failure on attempt {message.attempt}")
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.poison", max_attempts=3, backoff=lambda state: 0.05)
def poison(message):
    raise ValueError("poison message always fails")


@taskchan.consumer("taskchan.t.reject")
def reject(message):
    raise taskchan.Reject("not for us")


@taskchan.consumer("taskchan.t.retry", max_attempts=3)
def explicit_retry(message):
    if message.attempt == 1:
        raise taskchan.Retry(delay=float(message.content.get("delay", 0.2)))
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.crash", max_attempts=2, visibility_timeout=1)
def crash(message):
    """Kills its own worker process every time (a crash loop)."""
    _mark("t:started", message)
    os.kill(os.getpid(), signal.SIGKILL)


@taskchan.consumer("taskchan.t.async")
async def async_record(message):
    await asyncio.sleep(0)
    rec().rpush("t:done", f"{message.id}|{message.attempt}|{os.getpid()}")


# --- consumers of the failure-window tests (tests/failure_windows/) ----------


@taskchan.consumer("taskchan.fw.pause_before_ack", max_attempts=5)
def fw_pause_before_ack(message):
    """Marks done; on its first run (no file at content["marker"] yet) it then
    pauses every write to the test Redis (``CLIENT PAUSE ... WRITE``) and
    creates the marker file, so the worker's ack that follows is held in Redis."""
    _mark("t:done", message)
    marker = message.content["marker"]
    if not os.path.exists(marker):
        rec().execute_command("CLIENT", "PAUSE", int(message.content.get("pause_ms", 5000)), "WRITE")
        with open(marker, "w") as f:
            f.write(str(os.getpid()))


@taskchan.consumer("taskchan.fw.fail_once_slow_backoff", max_attempts=3, backoff=lambda state: 2.0)
def fw_fail_once_slow_backoff(message):
    """Fails its first attempt (retry scheduled 2 s later); marks done on the next."""
    _mark("t:started", message)
    if message.attempt == 1:
        raise RuntimeError("first attempt fails")
    _mark("t:done", message)


@taskchan.consumer("taskchan.fw.record_tag", max_attempts=3)
def fw_record_tag(message):
    """Marks done as ``"<content tag>|<attempt>|<pid>"`` (for messages sent without a known id)."""
    rec().rpush("t:done", f"{message.content['tag']}|{message.attempt}|{os.getpid()}")


@taskchan.consumer("taskchan.fw.work", max_attempts=10, backoff=lambda state: 0.2)
def fw_work(message):
    """Sleeps content["ms"] milliseconds, then marks done (retries fast when Redis is away)."""
    ms = message.content.get("ms", 0)
    if ms:
        time.sleep(ms / 1000)
    _mark("t:done", message)


@taskchan.consumer("taskchan.fw.crash_if", max_attempts=2, visibility_timeout=1)
def fw_crash_if(message):
    """Kills its own worker when content["crash"] is true; otherwise marks done."""
    _mark("t:started", message)
    if message.content.get("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    _mark("t:done", message)


# --- consumers of the Celery hand-off tests (tests/celery/) -------------------
# Channels with handoff="celery" run in a Celery worker (celery -A project worker).


@taskchan.consumer("taskchan.cel.record", max_attempts=3, handoff="celery")
def cel_record(message):
    _mark("t:done", message)


@taskchan.consumer("taskchan.cel.async", handoff="celery")
async def cel_async_record(message):
    await asyncio.sleep(0)
    rec().rpush("t:done", f"{message.id}|{message.attempt}|{os.getpid()}")


@taskchan.consumer("taskchan.cel.flaky", max_attempts=4, backoff=lambda state: 0.05, handoff="celery")
def cel_flaky(message):
    """Fails until attempt content["succeed_on"]."""
    _mark("t:started", message)
    if message.attempt < message.content.get("succeed_on", 2):
        raise RuntimeError(f"flaky failure on attempt {message.attempt}")
    _mark("t:done", message)


@taskchan.consumer("taskchan.cel.poison", max_attempts=3, backoff=lambda state: 0.05, handoff="celery")
def cel_poison(message):
    _mark("t:started", message)
    raise ValueError(f"poison under Celery, attempt {message.attempt}")


@taskchan.consumer("taskchan.cel.reject", max_attempts=5, handoff="celery")
def cel_reject(message):
    _mark("t:started", message)
    raise taskchan.Reject("not for us")


@taskchan.consumer("taskchan.cel.slow", max_attempts=5, handoff="celery")
def cel_slow(message):
    """Sleeps content["seconds"]; marks start and end."""
    _mark("t:started", message)
    time.sleep(float(message.content.get("seconds", 1)))
    _mark("t:done", message)


@taskchan.consumer("taskchan.cel.crash", max_attempts=2, handoff="celery")
def cel_crash(message):
    """Kills its own Celery worker every time (a crash loop)."""
    _mark("t:started", message)
    os.kill(os.getpid(), signal.SIGKILL)


@taskchan.consumer("taskchan.cel.reports", handoff="celery")
def cel_reports(message):
    """Waits for the test to watch (``t:go:<id>`` set), reports 1..2000 of 2000, then a last
    value whose note names the process it ran in."""
    deadline = time.monotonic() + 20
    while not rec().get(f"t:go:{message.id}") and time.monotonic() < deadline:
        time.sleep(0.02)
    for i in range(1, 2001):
        message.progress(i, 2000)
    taskchan.report_progress(2000, 2000, f"done in {os.getpid()}")
    _mark("t:done", message)


@taskchan.consumer("taskchan.cel.toggle", max_attempts=1)
def cel_toggle(message):
    """A plain taskchan channel (no hand-off): fails while the Redis key t:fail is set."""
    if rec().get("t:fail"):
        raise RuntimeError("t:fail is set")
    _mark("t:done", message)


# --- consumers of the admin tests (tests/admin/) -----------------------------


@taskchan.consumer("taskchan.adm.fail_once", max_attempts=1)
def adm_fail_once(message):
    """Fails the first message with a given content["key"] (one attempt: dead-lettered at
    once); a later message with the same key - the admin's retry - marks done."""
    if rec().set(f"t:adm:first:{message.content['key']}", message.id, nx=True):
        raise RuntimeError(f"first run for key {message.content['key']!r} fails")
    _mark("t:done", message)


@taskchan.consumer("taskchan.adm.keep", max_attempts=1, result_ttl=600)
def adm_keep(message):
    """Reports progress 3 of 3 with content["note"], marks done, and returns content["result"] (kept)."""
    message.progress(3, 3, message.content.get("note", "all done"))
    _mark("t:done", message)
    return message.content.get("result")


# --- consumers of the sharding tests (tests/integration/test_sharding.py) ----
# Eight channels, so that two Redis hosts each are home to some (see
# taskchan.stores.sharded.shard_index): d, f and h on the first, the rest on the second.

SHARDED_CHANNELS = [f"taskchan.sh.{name}" for name in "abcdefgh"]


def sh_record(message):
    """Sleeps content["ms"] milliseconds (marking the start first), then marks done."""
    ms = message.content.get("ms", 0)
    if ms:
        _mark("t:started", message)
        time.sleep(ms / 1000)
    _mark("t:done", message)


for _channel in SHARDED_CHANNELS:
    taskchan.consumer(_channel, max_attempts=5, visibility_timeout=2)(sh_record)


# --- consumers and hooks of the garbage and lifeline tests (tests/failure_windows/test_garbage.py) ---


@taskchan.consumer("taskchan.t.exit")
def exit_in_job(message):
    """Raises SystemExit inside a job thread: the thread is gone, so the worker must exit."""
    raise SystemExit("a consumer called sys.exit()")


if os.environ.get("TASKCHAN_TEST_BREAK_LOOP") == "maintenance":
    # A bug in one of the worker's loops, injected into a real worker process.
    from taskchan.worker.maintenance import Maintenance

    async def _broken_maintenance_loop(self):
        await asyncio.sleep(1.0)
        raise RuntimeError("a bug in the maintenance loop (TASKCHAN_TEST_BREAK_LOOP)")

    Maintenance.run = _broken_maintenance_loop
