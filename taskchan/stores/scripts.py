"""The Lua scripts of ``lua/``, one per atomic multi-key step, read by name.

Each script's header says its KEYS and ARGV; every key a script touches is
passed in KEYS[] (never built inside it), which is what lets a Redis Cluster
run them: all of one step's keys carry one channel's hash tag (``keys.py``).
The one exception is a priority level's stream, ``P:q:CH:pN``, which fetch,
reclaim and promote build from the channel's stream key (KEYS[]) and the level
they read: the levels in use are only known inside the script, and the name
begins with the stream's own, so it has the same hash tag and slot.
"""

from __future__ import annotations

from importlib import resources

SCRIPT_NAMES = (
    "send", "send_many", "promote", "fetch", "reschedule", "handback", "reclaim", "extend", "charge", "forget",
    "handoff_claim", "handoff_release", "rate", "slots", "fire", "touch", "status",
)


def load_scripts() -> dict[str, str]:
    folder = resources.files("taskchan.stores") / "lua"
    return {name: (folder / f"{name}.lua").read_text() for name in SCRIPT_NAMES}
