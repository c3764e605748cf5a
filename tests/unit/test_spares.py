"""Spare job threads (taskchan/worker/spares.py): one idle thread waits on the queue, the others
park, and a parked one is woken only when a queued job waits behind busy threads, or at a stop."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from taskchan.worker.spares import WAKE_AFTER, Spares


class Parking:
    """A job thread's ``idle`` call, run in a thread of its own: whether it returned, and what."""

    def __init__(self, spares: Spares):
        self.wake = threading.Event()
        self.returned: list[bool] = []
        self.thread = threading.Thread(target=lambda: self.returned.append(spares.idle(self.wake)), daemon=True)
        self.thread.start()

    def parked(self, seconds: float = 0.2) -> bool:
        self.thread.join(seconds)
        return self.thread.is_alive()


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_for(loop, seconds: float) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


def waiting_and_parked() -> tuple[queue.SimpleQueue, Spares, Parking]:
    """A queue, its spares, one thread waiting on it (this one) and one parked."""
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    spares = Spares(jobs.qsize)
    assert spares.idle(threading.Event()) is True
    spare = Parking(spares)
    assert spare.parked()
    return jobs, spares, spare


def test_one_idle_thread_waits_on_the_queue_and_the_others_park_until_the_stop():
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    spares = Spares(jobs.qsize)
    assert spares.idle(threading.Event()) is True  # the first idle thread: it blocks on the queue
    others = [Parking(spares) for _ in range(3)]
    assert all(other.parked() for other in others)
    spares.stop()
    for other in others:
        assert not other.parked(5), "a stop wakes every parked thread"
        assert other.returned == [False]
    assert spares.idle(threading.Event()) is True, "after a stop every idle thread waits on the queue"


def test_the_next_idle_thread_waits_on_the_queue_once_the_waiting_one_has_a_job():
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    spares = Spares(jobs.qsize)
    assert spares.idle(threading.Event()) is True
    spares.got()
    assert spares.idle(threading.Event()) is True


def test_a_thread_that_finds_a_job_queued_looks_again_instead_of_parking():
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    spares = Spares(jobs.qsize)
    assert spares.idle(threading.Event()) is True
    jobs.put("job")
    late = Parking(spares)
    assert not late.parked(5)
    assert late.returned == [False]


def test_a_parked_thread_is_woken_when_a_queued_job_waits_behind_busy_threads(loop):
    jobs, spares, spare = waiting_and_parked()
    spares.got()  # the waiting thread took a job and is busy with it: nobody waits on the queue
    jobs.put("job")
    spares.submitted(loop)
    run_for(loop, WAKE_AFTER * 20)
    assert not spare.parked(5), "nobody took the queued job: a parked thread must be woken"
    assert spare.returned == [False]


def test_no_thread_is_woken_while_the_busy_ones_keep_the_queue_served(loop):
    jobs, spares, spare = waiting_and_parked()
    jobs.put("job")
    spares.submitted(loop)
    jobs.get()  # a busy thread takes it before the check
    spares.taken += 1
    run_for(loop, WAKE_AFTER * 20)
    assert spare.parked(0.1), "the queue was served: nobody should have been woken"
    spares.stop()
    assert not spare.parked(5)


def test_a_job_queued_while_a_thread_parks_arms_a_wake_for_it(loop):
    """The loop may queue a job and look for parked threads between a thread's look at the
    queue and its parking.  Either the thread sees the job, or the loop sees the thread."""
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    queued_meanwhile = []

    def looked_then_job_came() -> int:
        size = jobs.qsize()  # the thread's look at the queue ...
        if not queued_meanwhile:  # ... then, once, the loop queues a job and sees who is parked
            queued_meanwhile.append(True)
            jobs.put("job")
            spares.submitted(loop)
        return size

    spares = Spares(looked_then_job_came)
    assert spares.idle(threading.Event()) is True  # this thread waits on the queue ...
    spare = Parking(spares)
    assert spare.parked()
    assert queued_meanwhile, "the job came while the thread was parking"
    spares.got()  # ... and had taken an earlier job before this one came: it is busy with that
    run_for(loop, WAKE_AFTER * 20)
    assert not spare.parked(5), "the job came as the thread parked: it must be woken for it"
    assert spare.returned == [False]
