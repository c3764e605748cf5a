"""The Celery hand-off's store methods (``HandoffStore`` in ``taskchan.stores.base``), run on every store.

The same ``store`` fixture as ``test_store.py``: a RedisStore against the
test's private redis-server, and a MemoryStore.
"""

from __future__ import annotations

import time

from .test_store import CH, make


def test_a_claimed_key_is_held_until_released_by_its_own_claim(store):
    assert store.handoff_claim(CH, "k", "~first", 10_000) is None
    assert store.handoff_claim(CH, "k", "~second", 10_000) == "~first"  # still publishing
    store.handoff_release(CH, "k", "~second")  # not its claim: left alone
    assert store.handoff_claim(CH, "k", "~third", 10_000) == "~first"
    store.handoff_release(CH, "k", "~first")
    assert store.handoff_claim(CH, "k", "~third", 10_000) is None


def test_a_claim_whose_sender_died_lapses(store):
    assert store.handoff_claim(CH, "k", "~dead", 50) is None
    time.sleep(0.3)
    assert store.handoff_claim(CH, "k", "~next", 10_000) is None


def test_a_recorded_key_answers_later_sends_with_the_first_id(store):
    assert store.handoff_claim(CH, "k", "~m1", 10_000) is None
    store.handoff_record(CH, "k", "m1", 10_000)
    assert store.handoff_claim(CH, "k", "~m2", 10_000) == "m1"
    # The same key as a plain send's: it stores nothing and answers m1.
    message_id, raw = make()
    assert store.send(CH, raw, message_id, idempotency_key="k", idempotency_ms=10_000) == "m1"


def test_starts_are_counted_per_attempt_until_the_attempt_ends(store):
    assert store.handoff_start(CH, "m1", 0) == 1
    assert store.handoff_start(CH, "m1", 0) == 2  # the first start's worker died
    assert store.handoff_start(CH, "m1", 1) == 1  # the next attempt counts on its own
    store.handoff_end(CH, "m1", 0)
    assert store.handoff_start(CH, "m1", 0) == 1


def test_ending_an_attempt_keeps_its_idempotency_key_for_the_window(store):
    store.handoff_record(CH, "k", "m1", 100)
    store.handoff_end(CH, "m1", 0, idempotency_key="k", idempotency_ms=10_000)
    time.sleep(0.3)
    assert store.handoff_claim(CH, "k", "~m2", 10_000) == "m1"
