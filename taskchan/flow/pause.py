"""``taskchan.pause(channel)`` and ``taskchan.resume(channel)``: hold a channel's messages, then let them go.

The state is a key in the channel's home store (``P:paused:CH``), so it holds
for every worker on every host and survives their restarts.  While a channel is
paused, sends are still accepted (and schedule slots still fire); workers read
nothing new from it within about a second (``worker/gate.py`` reads the state
every second) and what they had already leased but not started waits; jobs
already running finish.
"""

from __future__ import annotations

import time

from ..envelope import validate_channel
from ..stores.configured import get_store


def pause(channel: str, *, by: str = "") -> None:
    """Pause ``channel``: nothing new starts until ``resume``.  ``by`` says who (shown in the admin)."""
    validate_channel(channel)
    get_store().home(channel).set_paused(channel, {"since": time.time(), "by": str(by)[:200]})


def resume(channel: str) -> None:
    """Resume ``channel``: workers start its messages again within about a second."""
    validate_channel(channel)
    get_store().home(channel).set_paused(channel, None)
