"""A consumer's flow options, checked when ``@consumer`` is applied: one error, naming the rule.

``schedule`` / ``catch_up`` (``schedule.py``), ``rate_limit`` (``rate.py``),
``concurrency_limit`` / ``concurrency_key``.  Bad input raises
``taskchan.InvalidOption`` before anything is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidOption
from .rate import RateLimit, parse_rate
from .schedule import Crontab, Interval, parse_schedule

#: most jobs of one key (or channel) a concurrency limit lets run at once
MAX_CONCURRENCY_LIMIT = 10_000
#: longest concurrency key (it is part of a Redis key name); longer ones are refused at run time
MAX_CONCURRENCY_KEY_CHARS = 200


@dataclass(frozen=True, slots=True)
class Flow:
    """What a consumer asked of flow control; all None: no flow control (nothing costs anything)."""

    schedule: Interval | Crontab | None = None
    catch_up: bool = True
    rate_limit: RateLimit | None = None
    concurrency_limit: int | None = None
    concurrency_key: Callable[[Any], Any] | None = None

    @property
    def gated(self) -> bool:
        """Whether leased messages must be admitted by the worker's gate (a rate or concurrency limit)."""
        return self.rate_limit is not None or self.concurrency_limit is not None


def flow_options(
    *,
    schedule: Any = None,
    catch_up: Any = True,
    rate_limit: Any = None,
    concurrency_limit: Any = None,
    concurrency_key: Any = None,
    handoff: str | None = None,
) -> Flow:
    """Check and parse ``@consumer``'s flow options; InvalidOption for the first one out of bounds."""
    if not isinstance(catch_up, bool):
        raise InvalidOption(f"catch_up must be True or False, got {catch_up!r}")
    if concurrency_limit is not None and (
        isinstance(concurrency_limit, bool)
        or not isinstance(concurrency_limit, int)
        or not 1 <= concurrency_limit <= MAX_CONCURRENCY_LIMIT
    ):
        raise InvalidOption(
            f"concurrency_limit must be a whole number from 1 to {MAX_CONCURRENCY_LIMIT:,}, got {concurrency_limit!r}"
        )
    if concurrency_key is not None and (concurrency_limit is None or not callable(concurrency_key)):
        raise InvalidOption(
            "concurrency_key must be a function of the message (e.g. lambda message: message.content['tenant']) "
            f"and needs concurrency_limit; got {concurrency_key!r} with concurrency_limit={concurrency_limit!r}"
        )
    flow = Flow(
        schedule=None if schedule is None else parse_schedule(schedule),
        catch_up=catch_up,
        rate_limit=None if rate_limit is None else parse_rate(rate_limit),
        concurrency_limit=concurrency_limit,
        concurrency_key=concurrency_key,
    )
    if handoff is not None and (flow.gated or flow.schedule is not None):
        # Celery's workers run handed-off messages; they never pass taskchan's gate.
        raise InvalidOption(f"schedule, rate_limit and concurrency_limit do not apply with handoff={handoff!r}")
    return flow


def concurrency_key_of(flow: Flow, message: Any) -> str:
    """The key ``message`` is limited under: ``concurrency_key(message)`` as text, or "" (the whole channel).

    Raises InvalidOption when the function returns something other than a
    str or int, or text longer than MAX_CONCURRENCY_KEY_CHARS.
    """
    if flow.concurrency_key is None:
        return ""
    key = flow.concurrency_key(message)
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise InvalidOption(f"concurrency_key must return a str or int, got {key!r}")
    key = str(key)
    if len(key) > MAX_CONCURRENCY_KEY_CHARS:
        raise InvalidOption(f"concurrency_key must return at most {MAX_CONCURRENCY_KEY_CHARS} characters")
    return key
