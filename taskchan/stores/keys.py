"""Every Redis key taskchan writes, in one place.

``P`` is ``TASKCHAN_KEY_PREFIX`` (default ``taskchan``); ``CH`` a channel name.

With several Redis hosts (``sharded.py``) every key naming ``CH`` lives on the
channel's home host, and ``P:cel:ID:N`` and ``P:st:ID`` on the home of message
ID's channel (the status record is written by send.lua next to the message, and
follows it: retries and acks happen on the host that holds it; ``status(ID)``,
which knows no channel, asks every host side by side and takes the one that has it);
each host has its own ``P:channels`` (the channels ever sent to *that* host,
which is how workers find messages left on a channel's old home) and its own
worker registry ``P:w`` (each worker registers on every host it reads).

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
``P:n:CH:OUTCOME:BUCKET``  STRING  2 hours (EXPIRE)                     worker ack; OUTCOME is
                                                                         ``processed`` or ``failed``;
                                                                         BUCKET = unix time // 10 s
``P:w``                    ZSET    members pruned 3 heartbeats after    worker heartbeat: id -> last
                                   their last one                       heartbeat, unix ms
``P:w:ID``                 STRING  3 heartbeats (EX)                    worker heartbeat: JSON of pid,
                                                                         host, channels, started
``P:st:ID``                HASH    TASKCHAN_STATUS_TTL after its last   send.lua (channel, enqueued, due);
                                   write (PEXPIRE on every write; a     the worker's batched ack pipeline
                                   consumer's result_ttl if longer)     (status.lua: attempt starts,
                                                                         success, dead letter), reschedule's
                                                                         pipeline (retry); the fields:
                                                                         ``taskchan/tracking.py``
``P:cel:ID:N``             STRING  until attempt N+1 ends; 7-day TTL    Celery side of the hand-off
                                                                         (``redis_handoff.py``, INCR when
                                                                         it starts): starts of attempt N+1
                                                                         of message ID in a Celery worker
=========================  ======  ===================================  ==================================

For a channel that hands off to Celery, ``P:i:CH:KEY`` holds ``~ID`` while the
publish to the broker is in flight (``handoff_claim.lua``; the claim lapses
after TASKCHAN_SEND_RETRY_SECONDS + 5 s, so a sender that died leaves no lock),
then ``ID`` for delay + TASKCHAN_IDEMPOTENCY_WINDOW (``handoff/publish.py``),
set to the window when the message finishes under Celery.  The messages
themselves live in Celery's broker keys, not in ``P:q:CH``.  A ``P:cel:ID:N``
above 1 means earlier starts of that attempt died with their worker.

A stream entry has one field, ``m``: the envelope JSON (``taskchan.envelope``),
or, when the layer has ``symmetric_encryption_keys``, that JSON sealed as a
Fernet token (``codec.py``); so are the members of ``P:s:CH``.  Key names
(channel names, idempotency keys) are never sealed.
The consumer group's pending-entries list is the lease table: an entry read
with XREADGROUP is leased to that worker until it is acked; its idle time is
the time since the lease was taken or last renewed, and its delivery counter
is how many times it has been handed out.  Each worker's consumer name in
the group is dropped when it stops cleanly, or, if it was killed, by
``forget.lua`` once the name has been idle for 10 minutes holding no lease
(a live worker's next read recreates its name, should that ever happen to it).
"""

from __future__ import annotations

GROUP = "workers"
FIELD = "m"
STATS_TTL_SECONDS = 2 * 3600
#: safety lifetime of a Celery start counter (``P:cel:ID:N``) whose worker died
CELERY_STARTS_TTL_SECONDS = 7 * 24 * 3600
#: width of one outcome-counter bucket; "the last minute" sums the last 6, so it
#: is never more than 10 s off (whole-minute buckets read 0 just after a minute turns)
STATS_BUCKET_SECONDS = 10
BUCKETS_PER_MINUTE = 60 // STATS_BUCKET_SECONDS
BUCKETS_PER_HOUR = 3600 // STATS_BUCKET_SECONDS


def stats_bucket(now: float) -> int:
    return int(now // STATS_BUCKET_SECONDS)


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

    def counter(self, channel: str, outcome: str, bucket: int) -> str:
        return f"{self.prefix}:n:{channel}:{outcome}:{bucket}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:w:{worker_id}"

    def status(self, message_id: str) -> str:
        return f"{self.prefix}:st:{message_id}"

    def celery_starts(self, message_id: str, attempts_before: int) -> str:
        return f"{self.prefix}:cel:{message_id}:{attempts_before}"
