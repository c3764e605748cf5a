"""Every Redis key taskchan writes, in one place.

``P`` is ``TASKCHAN_KEY_PREFIX`` (default ``taskchan``); ``CH`` a channel name.

=========================  ======  ===================================  ==================================
key                        type    lifetime                             written by
=========================  ======  ===================================  ==================================
``P:channels``             SET     forever (a few bytes per channel)    send.lua: every channel sent to
``P:q:CH``                 STREAM  entries deleted when acked           send.lua, promote.lua, handback.lua
                                                                         (XADD); worker ack (XACK+XDEL)
  group ``workers``        group   with the stream                      worker start (XGROUP CREATE ... 0)
``P:s:CH``                 ZSET    members removed when promoted        send.lua (delay), reschedule.lua
                                                                         (retries); score = due, unix ms
``P:i:CH:KEY``             STRING  delay + window while pending; then   send.lua (SET NX), ack and
                                   TASKCHAN_IDEMPOTENCY_WINDOW          reschedule.lua (PEXPIRE)
``P:n:CH:OUTCOME:MINUTE``  STRING  2 hours (EXPIRE)                     worker ack; OUTCOME is
                                                                         ``processed`` or ``failed``
``P:w``                    ZSET    members pruned 3 heartbeats after    worker heartbeat: id -> last
                                   their last one                       heartbeat, unix ms
``P:w:ID``                 STRING  3 heartbeats (EX)                    worker heartbeat: JSON of pid,
                                                                         host, channels, started
=========================  ======  ===================================  ==================================

A stream entry has one field, ``m``: the envelope JSON (``taskchan.envelope``).
The consumer group's pending-entries list is the lease table: an entry read
with XREADGROUP is leased to that worker until it is acked; its idle time is
the time since the lease was taken or last renewed, and its delivery counter
is how many times it has been handed out.
"""

from __future__ import annotations

GROUP = "workers"
FIELD = "m"
STATS_TTL_SECONDS = 2 * 3600


class Keys:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.channels = f"{prefix}:channels"
        self.workers = f"{prefix}:w"

    def stream(self, channel: str) -> str:
        return f"{self.prefix}:q:{channel}"

    def scheduled(self, channel: str) -> str:
        return f"{self.prefix}:s:{channel}"

    def idempotency(self, channel: str, key: str) -> str:
        return f"{self.prefix}:i:{channel}:{key}"

    def counter(self, channel: str, outcome: str, minute: int) -> str:
        return f"{self.prefix}:n:{channel}:{outcome}:{minute}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:w:{worker_id}"
