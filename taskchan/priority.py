"""Message priority: the bounds ``send(..., priority=N)`` accepts, checked at the door.

A higher number is leased first: every store keeps each priority level of a
channel in a queue of its own and reads the highest non-empty one first
(``stores/keys.py``: ``P:q:CH:pN`` and ``P:lv:CH``).  Level 0, the default,
is the channel's own stream, so a channel that never uses priority is stored
and read as before.
"""

from __future__ import annotations

from typing import Any

from .exceptions import InvalidOption

MIN_PRIORITY = -100
MAX_PRIORITY = 100


def check_priority(priority: Any) -> int:
    """``priority`` if it is an int (not a bool) from MIN_PRIORITY to MAX_PRIORITY; InvalidOption otherwise."""
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise InvalidOption(
            f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY} (higher runs first), "
            f"got {priority!r}"
        )
    return priority
