"""Window 1: after ``send()`` stored the message, before the channel layer accepted it.

How this design closes it: there is no such moment.  ``send()`` validates
everything first, then stores the message with ONE atomic Lua step
(``lua/send.lua``: idempotency key + XADD to ``taskchan:q:<channel>`` + SADD
of the channel).  The stream *is* the channel: once the script ran, the
message is both stored and accepted; before, nothing was written.  Redis runs
a script whole or not at all, and with ``appendfsync always`` it answers only
after the write is on disk, so every id ``send()`` returned survives even a
SIGKILL of Redis itself.

How the tests hit the moment, with real processes:

- a producer subprocess sends in a tight loop and appends each returned id to
  a file (fsync per line); it is SIGKILLed at arbitrary moments of the loop,
  several times: every id in the file is processed by a burst worker, every
  stream entry decodes (nothing half written), and every stored message is
  processed, also those whose id the producer never got to write down;
- deterministically: ``CLIENT PAUSE WRITE`` holds the producer's send *inside
  Redis*.  (a) SIGKILL the producer there: the send never ran, nothing is
  stored, no id was returned.  (b) SIGSTOP the producer, unpause: Redis stores
  the message and writes the reply the frozen producer never reads; SIGKILL
  it: the message is stored but send() never returned, exactly the moment
  "stored, not yet acknowledged" -- it is processed (an extra, never a loss);
- SIGKILL of an ``appendonly`` redis-server (appendfsync always) in the middle
  of the send loop, twice, restarting it on the same port each time: every id
  send() returned is processed after the restart; sends that raised are not
  required.  One outage outlasts send()'s retry window (some sends raise
  StoreUnavailable), one is short enough for its retries to ride it out.
"""

import random
import signal
import time

import pytest
import redis

from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import (
    KEYS,
    blocked_clients,
    counts,
    read_ids,
    stream_envelopes,
    wait_exit,
    wait_unblocked,
    writes_paused,
)

CHANNEL = "taskchan.t.record"
PRODUCER = "tests.failure_windows.producer"


def _drain_with_burst_worker(manage, url, client):
    proc = manage(["runworker", CHANNEL, "--burst", "--concurrency", "4"], redis_url=url)
    assert wait_exit(proc, 60) == 0, proc.output()
    return counts(done_records(client))


def test_producer_sigkilled_mid_loop_loses_no_returned_id(
    redis_url, redis_client, manage, script, tmp_path
):
    ids_file = tmp_path / "ids"
    rng = random.Random()
    kills = 5
    for round_no in range(kills):
        before = len(read_ids(ids_file))
        producer = script(PRODUCER, [CHANNEL, ids_file], redis_url=redis_url)
        # Let it get going, then kill it at an arbitrary point of the loop.
        wait_for(
            lambda b=before: len(read_ids(ids_file)) > b + 20,
            timeout=30,
            message=f"producer round {round_no}",
        )
        time.sleep(rng.uniform(0.0, 0.05))
        producer.kill()
        assert producer.proc.returncode == -signal.SIGKILL, producer.output()

    returned = read_ids(ids_file)
    assert len(returned) == len(set(returned))
    stored = stream_envelopes(redis_client, CHANNEL)  # every entry decodes: nothing half written
    stored_ids = {e.id for e in stored}
    assert set(returned) <= stored_ids, "an id send() returned is not in the channel"
    # A message stored while its id was not yet written down may be extra, at most one per kill.
    assert len(stored_ids - set(returned)) <= kills

    done = _drain_with_burst_worker(manage, redis_url, redis_client)

    assert set(done) == stored_ids
    assert all(n == 1 for n in done.values()), "no worker crashed: nothing may run twice"
    assert redis_client.xlen(KEYS.stream(CHANNEL)) == 0


def _running_producer(script, redis_url, ids_file):
    """The producer script sending in a loop, once it has returned 10 ids (written to ``ids_file``)."""
    producer = script(PRODUCER, [CHANNEL, ids_file], redis_url=redis_url)
    wait_for(lambda: len(read_ids(ids_file)) >= 10, timeout=30, message="producer running")
    return producer


def _wait_send_held(client):
    return wait_for(
        lambda: blocked_clients(client, "evalsha"),
        timeout=20,
        message="producer's send held by CLIENT PAUSE",
    )


def test_send_held_in_redis_then_producer_killed_stores_nothing(
    redis_url, redis_client, manage, script, tmp_path
):
    ids_file = tmp_path / "ids"
    producer = _running_producer(script, redis_url, ids_file)
    with writes_paused(redis_client):
        _wait_send_held(redis_client)
        stored_before = {e.id for e in stream_envelopes(redis_client, CHANNEL)}
        producer.kill()
        # Redis drops the dead client with its unexecuted command.
        wait_unblocked(redis_client, "dead producer's client gone")
    returned = read_ids(ids_file)
    stored = {e.id for e in stream_envelopes(redis_client, CHANNEL)}

    assert stored == stored_before, "a send that never ran stored something"
    assert set(returned) == stored, "every returned id is stored, and nothing else"

    done = _drain_with_burst_worker(manage, redis_url, redis_client)
    assert set(done) == set(returned)


def test_send_stored_but_never_returned_is_still_processed(
    redis_url, redis_client, manage, script, tmp_path
):
    ids_file = tmp_path / "ids"
    producer = _running_producer(script, redis_url, ids_file)
    with writes_paused(redis_client):
        _wait_send_held(redis_client)
        producer.signal(signal.SIGSTOP)
        stored_before = {e.id for e in stream_envelopes(redis_client, CHANNEL)}
    # The held send.lua runs now; its reply goes to a producer that never reads it.
    wait_unblocked(redis_client, "held send executed")
    producer.kill()

    returned = read_ids(ids_file)
    stored = {e.id for e in stream_envelopes(redis_client, CHANNEL)}
    unreported = stored - set(returned)
    assert set(returned) <= stored
    assert len(unreported) == 1 and unreported == stored - stored_before, (
        "the send in flight is stored whole, though its id never reached the producer"
    )

    done = _drain_with_burst_worker(manage, redis_url, redis_client)
    assert set(done) == stored
    assert all(n == 1 for n in done.values())


@pytest.mark.timeout(180)
def test_redis_sigkilled_mid_send_loop_keeps_every_returned_id(
    redis_server_factory, manage, script, tmp_path
):
    server = redis_server_factory(appendonly=True)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    ids_file = tmp_path / "ids"
    producer = script(PRODUCER, [CHANNEL, ids_file], redis_url=server.url)
    rng = random.Random()

    returned_before_kill: list[str] = []
    # Round 0: Redis stays away longer than send()'s retry window (1 s in the
    # test settings), so some sends raise.  Round 1: a short hiccup that
    # send()'s retries ride out.
    for round_no, outage in enumerate((2.0, 0.3)):
        already = len(read_ids(ids_file))
        wait_for(
            lambda a=already: len(read_ids(ids_file)) >= a + 50,
            timeout=30,
            message=f"sends, round {round_no}",
        )
        time.sleep(rng.uniform(0.0, 0.05))
        server.kill()
        # Everything the file lists now was returned by send() before the kill.
        returned_before_kill = read_ids(ids_file)
        time.sleep(outage)
        server.start()  # same port, same appendonly dir
        client = redis.Redis.from_url(server.url, decode_responses=True)
    # The producer keeps going against the restarted server.
    after_restart = len(read_ids(ids_file))
    wait_for(
        lambda: len(read_ids(ids_file)) >= after_restart + 50,
        timeout=30,
        message="sends after restart",
    )
    producer.kill()

    returned = read_ids(ids_file)
    failed_sends = [line for line in ids_file.read_text().splitlines() if line.startswith("ERR")]
    stored = {e.id for e in stream_envelopes(client, CHANNEL)}  # AOF replay left no half entry
    assert set(returned_before_kill) <= stored, "Redis lost a message send() had returned"
    assert set(returned) <= stored
    assert failed_sends, "a 2 s outage must make some send() raise (StoreUnavailable)"

    done = _drain_with_burst_worker(manage, server.url, client)

    assert set(done) == stored
    assert set(returned) <= set(done)
    print(
        f"w1 redis kill: returned={len(returned)} stored={len(stored)} failed_sends={len(failed_sends)}"
    )
