"""The worker's outage backoff and log (outage.py) and its channels set aside (quarantine.py), on a fake clock."""

from __future__ import annotations

import asyncio
import logging

from taskchan.worker.outage import Outage
from taskchan.worker.quarantine import RECHECK_SECONDS, Quarantine


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_backs_off_exponentially_to_its_cap_and_logs_a_line_per_step(caplog):
    clock = Clock()
    outage = Outage("redis://host", first=0.1, cap=5.0, clock=clock)
    waits = []
    with caplog.at_level(logging.WARNING, logger="taskchan.worker"):
        # Three loops failing side by side for ten minutes, each waiting as told.
        while clock.now < 1600:
            for _loop in range(3):
                waits.append(outage.failed("fetch", ConnectionError("refused")))
            clock.now += waits[-1]
        outage.answered()
        outage.answered()

    assert waits[0] == 0.1 and max(waits) == 5.0
    assert waits == sorted(waits)  # never shorter again while it stays down
    lines = [r.getMessage() for r in caplog.records]
    # one line when it went down, one per doubling up to the cap, one a minute after, one when back
    assert "does not answer" in lines[0] and "up to 5 s" in lines[0]
    assert len(lines) <= 1 + 7 + 10 + 1, lines
    assert sum("answers again" in line for line in lines) == 1
    assert len(waits) > 300  # versus one line per failed call before


def test_a_host_that_answers_again_waits_no_more():
    clock = Clock()
    outage = Outage("h", clock=clock)
    outage.failed("fetch", OSError())
    clock.now += 30
    assert outage.delay() == 5.0
    outage.answered()
    assert (outage.down, outage.delay()) == (False, 0.0)


class Store:
    def __init__(self, wrong):
        self.wrong = wrong
        self.asked = []

    async def wrong_type_channels(self, channels):
        self.asked.append(list(channels))
        return {c: f"{c}'s key is a string" for c in channels if c in self.wrong}


def test_a_channel_with_a_wrong_key_is_set_aside_until_fixed(caplog):
    clock = Clock()
    quarantine = Quarantine(clock=clock)
    store = Store({"taskchan.b"})
    channels = ["taskchan.a", "taskchan.b", "taskchan.c"]

    with caplog.at_level(logging.WARNING, logger="taskchan.worker"):
        assert asyncio.run(quarantine.inspect(0, store, channels))
        assert quarantine.usable(0, channels) == ["taskchan.a", "taskchan.c"]
        assert quarantine.usable(1, channels) == channels  # another Redis host: not concerned
        assert quarantine.report() == {"taskchan.b": "taskchan.b's key is a string"}

        asyncio.run(quarantine.recheck(0, store))  # not due yet: not even asked
        assert store.asked == [channels]
        clock.now += RECHECK_SECONDS
        asyncio.run(quarantine.recheck(0, store))  # still wrong: set aside again, quietly
        assert quarantine.usable(0, channels) == ["taskchan.a", "taskchan.c"]
        store.wrong.clear()
        clock.now += RECHECK_SECONDS
        asyncio.run(quarantine.recheck(0, store))

    assert quarantine.usable(0, channels) == channels and quarantine.report() == {}
    lines = [r.getMessage() for r in caplog.records]
    assert sum("channel taskchan.b cannot be read: taskchan.b's key is a string" in line for line in lines) == 1
    assert lines[-1] == "channel taskchan.b can be read again"


def test_a_wrongtype_no_channel_explains_sets_nothing_aside():
    quarantine = Quarantine(clock=Clock())
    assert not asyncio.run(quarantine.inspect(0, Store(set()), ["taskchan.a"]))
    assert quarantine.usable(0, ["taskchan.a"]) == ["taskchan.a"]
