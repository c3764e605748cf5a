"""Durable sends: ``send()`` returns only once TASKCHAN_SEND_REPLICAS replicas hold the message.

Redis replicates asynchronously: a master that dies right after it stored a
message may take it along, and the replica promoted in its place never had
it.  ``WAIT N timeout`` blocks until N replicas acknowledged every write made
*on the same connection* before it, so the send script and the WAIT go out as
one pipeline on one connection to the master that holds the channel (on a
cluster, the node of the channel's slot: ``cluster.py``), with, for a send with
an idempotency key, ``lua/touch.lua`` between them (a repeated key writes
nothing, yet its first message must be waited for too).  When fewer
replicas answer in time, ``SendNotReplicated`` says that the message was
stored on the master but may or may not survive a failover.

Only sends wait.  The worker's steps do not: a lost ack or lease only makes a
message run again (at least once), and a lost retry reschedule
(``reschedule.lua``: ack and re-schedule in one script, replicated as one) leaves
the delivery leased as it was, so it is reclaimed and run again: a
duplicate attempt, never a loss.  See docs/deploying.md, "Durable sends".
"""

from __future__ import annotations

import asyncio
from importlib import resources

from redis.exceptions import NoScriptError

from ..conf import settings
from ..exceptions import SendNotReplicated

#: lua/touch.lua: after a send with an idempotency key, a write WAIT can count on
TOUCH = (resources.files("taskchan.stores") / "lua" / "touch.lua").read_text()


def wanted() -> int:
    """How many replicas a send waits for (TASKCHAN_SEND_REPLICAS; 0: none)."""
    return settings.SEND_REPLICAS


def wait_args() -> tuple[str, int, int]:
    """The WAIT command for the configured count and timeout (ms, at least 1: WAIT 0 blocks forever)."""
    return "WAIT", settings.SEND_REPLICAS, max(1, round(settings.SEND_REPLICAS_TIMEOUT * 1000))


def checked(replies: list, where, asking: bool = False) -> str:
    """The message id from a durable send's replies (the first error raised); raise when WAIT
    counted too few replicas."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    message_id, acknowledged = replies[1 if asking else 0], int(replies[-1])
    check_acknowledged(acknowledged, where, message_id)
    return message_id


def check_acknowledged(acknowledged: int, where, message_id: str | None = None) -> None:
    """Raise ``SendNotReplicated`` when fewer than TASKCHAN_SEND_REPLICAS replicas acknowledged."""
    count = settings.SEND_REPLICAS
    if acknowledged < count:
        raise SendNotReplicated(
            f"{where!r} stored the message{f' {message_id}' if message_id else ''}, but only "
            f"{acknowledged} of the {count} replica(s) TASKCHAN_SEND_REPLICAS asks for acknowledged it "
            f"within {settings.SEND_REPLICAS_TIMEOUT} s: it may or may not survive a failover. "
            "Send it again with the same idempotency_key to be sure it is kept once; if this master "
            "has fewer replicas than that, lower TASKCHAN_SEND_REPLICAS.",
            message_id=message_id, acknowledged=acknowledged, wanted=count,
        )


def _queue_send(pipe, script, touch, keys, args, asking: bool) -> None:
    """The send script, touch.lua for an idempotency key (a repeat stores nothing, see
    lua/touch.lua) and WAIT, as bare EVALSHA: a Script call on a pipeline would ask
    SCRIPT EXISTS, a round trip of its own, before every send (``scripts.queue_evalsha``)."""
    if asking:
        pipe.execute_command("ASKING")
    pipe.evalsha(script.sha, len(keys), *keys, *args)
    if len(keys) > 3:
        if asking:
            pipe.execute_command("ASKING")
        pipe.evalsha(touch.sha, len(keys) - 3, *keys[3:])
    pipe.execute_command(*wait_args())


def _unloaded(replies: list) -> bool:
    """Redis lost a script (a restart, SCRIPT FLUSH): the send goes again once loaded.  A send
    whose script was missing stored nothing; should only touch.lua have been missing, the
    send had an idempotency key, so its repeat stores nothing more."""
    return any(isinstance(reply, NoScriptError) for reply in replies)


def send_waiting(client, script, keys, args, where, *, asking: bool = False) -> str:
    """Run the send script and WAIT on one connection of ``client`` (a sync redis-py client to the
    master); ``asking`` sends ASKING first (a cluster slot being migrated to that master)."""
    touch = client.register_script(TOUCH)
    pipe = client.pipeline(transaction=False)
    _queue_send(pipe, script, touch, keys, args, asking)
    replies = pipe.execute(raise_on_error=False)
    if _unloaded(replies):
        for loaded in (script, touch):
            client.script_load(loaded.script)
        _queue_send(pipe, script, touch, keys, args, asking)
        replies = pipe.execute(raise_on_error=False)
    return checked(replies, where, asking)


async def asend_waiting(client, script, keys, args, where, *, asking: bool = False) -> str:
    """``send_waiting`` for a redis.asyncio client."""
    touch = client.register_script(TOUCH)
    pipe = client.pipeline(transaction=False)
    _queue_send(pipe, script, touch, keys, args, asking)
    replies = await pipe.execute(raise_on_error=False)
    if _unloaded(replies):
        for loaded in (script, touch):
            await client.script_load(loaded.script)
        _queue_send(pipe, script, touch, keys, args, asking)
        replies = await pipe.execute(raise_on_error=False)
    return checked(replies, where, asking)


#: seconds a check of the replicas waits for Redis (the system check, the worker's start)
CHECK_TIMEOUT = 2.0


def shortfall(store, count: int) -> dict[str, int]:
    """The masters of ``store`` with fewer than ``count`` connected replicas, with how many they have.

    Raises NotImplementedError for a store without replicas (in memory), and
    Redis errors when a master does not answer within CHECK_TIMEOUT.
    """
    async def read():
        try:
            return await asyncio.wait_for(store.replicas_per_master(), CHECK_TIMEOUT)
        finally:
            await store.aclose()

    return short_of(asyncio.run(read()), count)


def short_of(per_master: dict[str, int], count: int) -> dict[str, int]:
    """The masters of ``per_master`` (``replicas_per_master()``) with fewer than ``count`` replicas."""
    return {where: n for where, n in per_master.items() if n < count}
