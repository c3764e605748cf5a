"""The worker's acker and status notes (taskchan/worker/acker.py), on every store: a start note
is held NOTE_DELAY, is never written once a later note carries it, and a stop writes every note
(or says how many it gave up on); a host that refused notes carried since leaves the ack loop idle."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from taskchan.progress.hub import ProgressHub
from taskchan.progress.report import report_progress
from taskchan.stores.base import Partition
from taskchan.stores.notes import StatusNote
from taskchan.stores.redis import RedisStore
from taskchan.stores.slot_tags import tagged_id
from taskchan.worker.acker import ACK_BACKOFF, NOTE_DELAY, Acker

HOUR_MS = 3_600_000


def _note(message_id: str, **fields) -> StatusNote:
    return StatusNote(message_id, fields, HOUR_MS)


@pytest.fixture
def acker(store):
    return Acker({0: Partition(0, store, [])})


@pytest.fixture
def message_ids():
    """Ids with a slot's tag, so that a cluster can name their records."""
    return [tagged_id(slot) for slot in (0, 5000, 12000)]


async def test_a_start_note_waits_note_delay_then_is_written(acker, store, message_ids):
    acker.note(0, _note(message_ids[0], **{"a:1": "[1.0,\"w\"]"}))
    await acker.send()
    assert await store.status_record(message_ids[0]) is None  # held: the job may end first
    await asyncio.sleep(NOTE_DELAY * 1.5)
    await acker.send()
    assert (await store.status_record(message_ids[0]))["a:1"] == "[1.0,\"w\"]"


async def test_a_carried_note_is_never_written(acker, store, message_ids):
    start = _note(message_ids[0], **{"a:1": "s"})
    acker.note(0, start)
    acker.note(0, _note(message_ids[1], **{"a:1": "t"}))
    start.carried = True  # the attempt's end holds the same fields: it writes them
    await asyncio.sleep(NOTE_DELAY * 1.5)
    await acker.send()
    assert await store.status_record(message_ids[0]) is None
    assert (await store.status_record(message_ids[1]))["a:1"] == "t"


async def test_the_stop_writes_notes_still_held(acker, store, message_ids):
    for n, message_id in enumerate(message_ids):
        acker.note(0, _note(message_id, p=str(n)))
    await acker.flush(abandon=lambda: False)
    for n, message_id in enumerate(message_ids):
        assert (await store.status_record(message_id))["p"] == str(n)


async def test_a_carried_note_behind_a_young_one_is_dropped_too(acker, store, message_ids):
    young, carried = _note(message_ids[0], p="1"), _note(message_ids[1], p="2")
    acker.note(0, young)
    acker.note(0, carried)
    carried.carried = True
    await acker.send()
    await asyncio.sleep(NOTE_DELAY * 1.5)
    await acker.send()
    assert (await store.status_record(message_ids[0]))["p"] == "1"
    assert await store.status_record(message_ids[1]) is None


async def test_a_refused_host_whose_notes_were_carried_since_leaves_the_loop_idle(message_ids):
    nobody = RedisStore("redis://127.0.0.1:1/0")  # nothing listens there: every ack fails
    acker = Acker({0: Partition(0, nobody, [])})
    start = _note(message_ids[0], **{"a:1": "s"})
    acker.note(0, start)
    await acker.send(hold=False)  # refused: the note comes back and the host backs off
    start.carried = True  # then the attempt's end note carries it, through another host
    await asyncio.sleep(ACK_BACKOFF * 1.5)  # the host's retry time passes with nothing to send it
    loop = asyncio.ensure_future(acker.run())
    cpu = time.process_time()
    await asyncio.sleep(0.5)
    spent = time.process_time() - cpu
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await nobody.aclose()
    assert spent < 0.1, f"the ack loop spent {spent:.2f} s of CPU in 0.5 s with nothing to send"


async def test_a_progress_note_is_carried_by_the_next_one_and_by_the_outcome():
    """ProgressHub (taskchan/progress/hub.py) marks the note it queued before: an older value
    written after the outcome's note, or after the next attempt's, would put it back."""
    queued: list[StatusNote] = []
    hub = ProgressHub(lambda index, note: queued.append(note))
    message_id = tagged_id(0)
    hub.start(message_id, 1, 0, HOUR_MS)
    for current in (1, 2):
        assert report_progress(current, 10)
        hub.flush()
    fields, reported = hub.finish(message_id)
    assert reported and fields["p"] == queued[-1].fields["p"]
    assert [note.carried for note in queued] == [True, True]


async def test_a_stop_that_gives_up_on_a_host_says_how_many_notes_it_drops(message_ids, caplog):
    nobody = RedisStore("redis://127.0.0.1:1/0")  # nothing listens there: every ack fails
    acker = Acker({0: Partition(0, nobody, [])})
    carried = _note(message_ids[0], **{"a:1": "s"})
    acker.note(0, carried)
    acker.note(0, _note(message_ids[1], **{"a:1": "t"}))
    acker.note(0, _note(message_ids[2], p="{}"))
    carried.carried = True  # written by a later note elsewhere: not lost
    await acker.flush(lambda: True)  # a stop that gives up after the first try
    assert "giving up on 2 status note(s) at shutdown" in caplog.text
    caplog.clear()
    await acker.flush(lambda: True)  # they are gone: nothing more to give up on
    await nobody.aclose()
    assert "status note" not in caplog.text


async def test_a_stop_that_gives_up_while_a_job_thread_still_starts_counts_without_failing(message_ids):
    """An unclean stop: a thread past its stop check still appends start notes while flush counts."""
    nobody = RedisStore("redis://127.0.0.1:1/0")
    acker = Acker({0: Partition(0, nobody, [])})
    for _ in range(100_000):
        acker.note(0, _note(message_ids[0], p="{}"))

    stopped = threading.Event()

    def job_thread():
        while not stopped.is_set():
            acker.note(0, _note(message_ids[1], **{"a:1": "t"}))

    thread = threading.Thread(target=job_thread)
    thread.start()
    try:
        await acker.flush(lambda: True)  # iterating the deque here raised "mutated during iteration"
    finally:
        stopped.set()
        thread.join()
        await nobody.aclose()
