"""The retry decision (``taskchan.retry``): backoff, Reject, exhaustion, Retry(delay)."""

from __future__ import annotations

import pytest
import tenacity

import taskchan
from taskchan.retry import DEFAULT_BACKOFF, backoff_delay, decide

SAMPLES = 200


def samples(attempt: int, wait=DEFAULT_BACKOFF) -> list[float]:
    return [backoff_delay(wait, attempt) for _ in range(SAMPLES)]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_default_backoff_is_exponential_with_up_to_a_second_of_jitter(attempt):
    base = 2 ** (attempt - 1)  # about 1, 2, 4, 8, 16, 32 s after attempts 1..6

    delays = samples(attempt)

    assert all(base <= d <= base + 1 for d in delays), (min(delays), max(delays))
    assert len(set(delays)) > 1, "no jitter: a burst of failures would retry in lockstep"


def test_default_backoff_grows_with_each_attempt():
    for attempt in range(1, 9):
        # The smallest wait after the next attempt is at least the largest after this one.
        assert min(samples(attempt + 1)) >= max(samples(attempt))


def test_default_backoff_below_the_cap_is_not_cut():
    delays = samples(10)

    assert all(512 <= d <= 513 for d in delays)


@pytest.mark.parametrize("attempt", [11, 12, 20, 60, 500])
def test_default_backoff_is_capped_at_ten_minutes(attempt):
    assert set(samples(attempt)) == {600}


def test_a_failure_with_attempts_left_is_retried_after_the_backoff():
    decision = decide(RuntimeError("boom"), attempt=3, max_attempts=5)

    assert not decision.dead_letter
    assert 4 <= decision.delay <= 5
    assert decision.reason == "will retry"


def test_the_consumers_backoff_is_used_when_given():
    decision = decide(
        RuntimeError("boom"), attempt=2, max_attempts=5, backoff=tenacity.wait_fixed(7)
    )

    assert decision.delay == 7


def test_a_backoff_is_asked_with_the_number_of_the_failed_attempt():
    asked = []

    def wait(state):
        asked.append(state.attempt_number)
        return 0.25

    assert decide(ValueError(), attempt=4, max_attempts=10, backoff=wait).delay == 0.25
    assert asked == [4]


def test_a_negative_backoff_is_treated_as_no_wait():
    assert decide(ValueError(), attempt=1, max_attempts=3, backoff=lambda state: -5).delay == 0.0


@pytest.mark.parametrize("attempt", [1, 2, 5])
def test_reject_dead_letters_at_once(attempt):
    decision = decide(taskchan.Reject("bad input"), attempt=attempt, max_attempts=5)

    assert decision.dead_letter
    assert decision.delay is None
    assert decision.reason == "rejected"


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("boom"), taskchan.Retry(delay=1), taskchan.Retry()],
    ids=["error", "retry-delay", "retry"],
)
@pytest.mark.parametrize(("attempt", "max_attempts"), [(5, 5), (1, 1), (7, 5)])
def test_attempts_exhausted_dead_letters(exc, attempt, max_attempts):
    decision = decide(exc, attempt=attempt, max_attempts=max_attempts)

    assert decision.dead_letter
    assert decision.reason == "max attempts reached"


@pytest.mark.parametrize(("delay", "expected"), [(2.5, 2.5), (0, 0.0), (30, 30.0), (-1, 0.0)])
def test_retry_with_a_delay_is_honoured(delay, expected):
    decision = decide(
        taskchan.Retry(delay=delay), attempt=1, max_attempts=3, backoff=tenacity.wait_fixed(99)
    )

    assert not decision.dead_letter
    assert decision.delay == expected
    assert decision.reason == "retry requested"


def test_retry_without_a_delay_uses_the_backoff():
    decision = decide(taskchan.Retry(), attempt=2, max_attempts=3, backoff=tenacity.wait_fixed(9))

    assert not decision.dead_letter
    assert decision.delay == 9
