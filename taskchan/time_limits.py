"""The ``time_limit`` option: its bounds, and a consumer's limit in force.

``@taskchan.consumer(..., time_limit=seconds)`` or ``TASKCHAN_TIME_LIMIT``
(None: no limit).  The worker enforces it (``taskchan/worker/time_limits.py``);
``docs/time-limits-and-cancel.md`` says how and with which guarantees.
"""

from __future__ import annotations

import math
from typing import Any

from .exceptions import InvalidOption

#: the longest time limit accepted, in seconds (30 days): past it a limit
#: protects nothing, and a typo in milliseconds (``time_limit=600000``) is caught
MAX_TIME_LIMIT = 30 * 24 * 3600


def time_limit_problem(value: Any) -> str | None:
    """Why ``value`` is not a time limit (None or seconds, 0 < seconds <= MAX_TIME_LIMIT), or None if it is."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be None or a number of seconds, got {value!r}"
    if not 0 < value <= MAX_TIME_LIMIT or math.isnan(value):
        return f"must be more than 0 and at most {MAX_TIME_LIMIT:,} seconds (30 days), got {value!r}"
    return None


def check_time_limit(value: Any) -> None:
    """Refuse a ``time_limit`` outside its bounds with ``InvalidOption``."""
    problem = time_limit_problem(value)
    if problem is not None:
        raise InvalidOption(f"time_limit {problem}")
