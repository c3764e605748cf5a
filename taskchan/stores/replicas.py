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
    """The message id from a durable send's replies; raise when WAIT counted too few replicas."""
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


def send_waiting(client, script, keys, args, where, *, asking: bool = False) -> str:
    """Run the send script and WAIT on one connection of ``client`` (a sync redis-py client to the
    master); ``asking`` sends ASKING first (a cluster slot being migrated to that master)."""
    pipe = client.pipeline(transaction=False)
    if asking:
        pipe.execute_command("ASKING")
    script(keys=keys, args=args, client=pipe)
    if len(keys) > 3:  # an idempotency key: a repeat stores nothing, see lua/touch.lua
        if asking:
            pipe.execute_command("ASKING")
        client.register_script(TOUCH)(keys=keys[3:], client=pipe)
    pipe.execute_command(*wait_args())
    return checked(pipe.execute(), where, asking)


async def asend_waiting(client, script, keys, args, where, *, asking: bool = False) -> str:
    """``send_waiting`` for a redis.asyncio client (whose scripts queue themselves on a pipeline when awaited)."""
    pipe = client.pipeline(transaction=False)
    if asking:
        pipe.execute_command("ASKING")
    await script(keys=keys, args=args, client=pipe)
    if len(keys) > 3:
        if asking:
            pipe.execute_command("ASKING")
        await client.register_script(TOUCH)(keys=keys[3:], client=pipe)
    pipe.execute_command(*wait_args())
    return checked(await pipe.execute(), where, asking)


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
