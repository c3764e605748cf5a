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

import functools
from importlib import resources

from redis.exceptions import NoScriptError, ResponseError

SCRIPT_NAMES = (
    "send", "send_many", "promote", "fetch", "reschedule", "handback", "reclaim", "extend", "charge", "forget",
    "handoff_claim", "handoff_release", "rate", "slots", "fire", "touch", "status",
)


def load_scripts() -> dict[str, str]:
    folder = resources.files("taskchan.stores") / "lua"
    return {name: (folder / f"{name}.lua").read_text() for name in SCRIPT_NAMES}


def queue_evalsha(pipe, script, keys, args, reruns: dict) -> None:
    """Queue ``script`` on a redis-py ``pipe`` as a bare EVALSHA, noting in ``reruns`` (under its
    place in the pipeline) the Script call that runs it alone.

    A Script call on a pipeline makes redis-py ask Redis whether the script
    exists (SCRIPT EXISTS, a round trip of its own) before every execute: every
    batched ack and every upkeep tick.  Redis answers NOSCRIPT only after a
    restart or SCRIPT FLUSH; ``executed`` then runs the call again alone,
    and the Script call loads the script first.
    """
    reruns[len(pipe.command_stack)] = functools.partial(script, keys=keys, args=args)
    pipe.evalsha(script.sha, len(keys), *keys, *args)


async def rerun_unloaded(replies: list, reruns: dict) -> list:
    """A pipeline's ``replies`` (``raise_on_error=False``) with each NOSCRIPT reply of a call in
    ``reruns`` replaced by what that call gives run alone, or the Redis error it raises."""
    for index, call in reruns.items():
        if isinstance(replies[index], NoScriptError):
            try:
                replies[index] = await call()
            except ResponseError as exc:
                replies[index] = exc
    return replies


async def executed(pipe, reruns: dict, tolerated: str = "") -> list:
    """Execute ``pipe`` and return its replies (NOSCRIPT ones rerun: ``rerun_unloaded``).
    The first error is raised, except one whose text holds ``tolerated``: that one stays
    among the replies."""
    replies = await rerun_unloaded(await pipe.execute(raise_on_error=False), reruns)
    for reply in replies:
        if isinstance(reply, Exception) and not (tolerated and tolerated in str(reply)):
            raise reply
    return replies
