"""What happens after a failed attempt: retry later, or dead-letter.

Backoff maths is tenacity's.  The default is ``wait_exponential_jitter(multiplier=1,
max=600, jitter=1)``: before attempt k+1 the wait is min(600, 2**(k-1)) seconds
plus up to 1 s of random jitter, i.e. about 1, 2, 4, 8, 16 s for attempts 2..6.
Jitter spreads a burst of failures (a bad deploy, a database blip) so their
retries do not all arrive in the same instant.
"""

from __future__ import annotations

from dataclasses import dataclass

import tenacity

from .exceptions import Reject, Retry

DEFAULT_BACKOFF = tenacity.wait_exponential_jitter(multiplier=1, max=600, jitter=1)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``delay`` seconds until the next attempt, or dead-letter when ``delay`` is None."""

    delay: float | None
    reason: str

    @property
    def dead_letter(self) -> bool:
        return self.delay is None


def decide(exc: BaseException, attempt: int, max_attempts: int, backoff=None, envelope=None) -> RetryDecision:
    """Decide after attempt number ``attempt`` (1-based) raised ``exc``.

    ``envelope`` (the message) is handed to the wait strategy as the retry
    state's ``args[0]``: a consumer whose backoff depends on the message (the
    django.tasks backend: each task's own) reads it there.
    """
    if isinstance(exc, Reject):
        return RetryDecision(None, "rejected")
    if attempt >= max_attempts:
        return RetryDecision(None, "max attempts reached")
    if isinstance(exc, Retry) and exc.delay is not None:
        return RetryDecision(max(0.0, float(exc.delay)), "retry requested")
    return RetryDecision(backoff_delay(backoff or DEFAULT_BACKOFF, attempt, envelope), "will retry")


def backoff_delay(wait, attempt: int, envelope=None) -> float:
    """Seconds a tenacity wait strategy gives after ``attempt`` failed attempts."""
    args = () if envelope is None else (envelope,)
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=args, kwargs={})
    state.attempt_number = attempt
    return max(0.0, float(wait(state)))
