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
                                   TASKCHAN_IDEMPOTENCY_WINDOW          reschedule.lua (PEXPIRE);
                                                                        touch.lua (its lifetime, as it
                                                                        is: durable sends)
``P:n:CH:OUTCOME:BUCKET``  STRING  2 hours (EXPIRE)                     worker ack; OUTCOME is
                                                                         ``processed``, ``failed`` or
                                                                         ``cancelled``;
                                                                         BUCKET = unix time // 10 s
``P:w``                    ZSET    members pruned 3 heartbeats after    worker heartbeat: id -> last
                                   their last one                       heartbeat, unix ms
``P:w:ID``                 STRING  3 heartbeats (EX)                    worker heartbeat: JSON of pid,
                                                                         host, channels, started
``P:x``                    ZSET    members pruned at each cancel once     ``cancel()`` (``redis_cancels.py``):
                                   lapsed; the key expires with its      cancelled message id -> unix ms
                                   newest member (PEXPIRE GT)            its marker lapses
                                                                         (TASKCHAN_CANCEL_TTL); on every
                                                                         host when sharded
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
``P:rate:CH``              HASH    until the bucket would be full       ``rate.lua`` (worker, before a
                                   again (PEXPIRE)                      rate-limited message starts):
                                                                         tokens, last refill (ms)
``P:cc:CH:KEY``            ZSET    members expire with their holder's   ``slots.lua`` (take), worker
                                   lease (score = expiry, unix ms);     renewals (ZADD XX) and releases
                                   the key with its last member         (ZREM); KEY = concurrency_key's
                                                                         value, empty for the channel
``P:sched:CH``             STRING  forever (one number per scheduled    ``fire.lua``: the last schedule
                                   channel)                             slot fired, unix ms
``P:paused:CH``            STRING  until resumed                        ``taskchan.pause`` (JSON: since,
                                                                         by); ``resume`` deletes it
=========================  ======  ===================================  ==================================

For a channel that hands off to Celery, ``P:i:CH:KEY`` holds ``~ID`` while the
publish to the broker is in flight (``handoff_claim.lua``; the claim lapses
after TASKCHAN_SEND_RETRY_SECONDS + 5 s, so a sender that died leaves no lock),
then ``ID`` for delay + TASKCHAN_IDEMPOTENCY_WINDOW (``handoff/publish.py``),
set to the window when the message finishes under Celery.  The messages
themselves live in Celery's broker keys, not in ``P:q:CH``.  A ``P:cel:ID:N``
above 1 means earlier starts of that attempt died with their worker.

On a Redis Cluster (``cluster.py``, ``ClusterKeys``) every key naming a
channel carries the channel's hash tag, ``{CH}``, so all of one channel's keys
share one hash slot and every script and command stays single-slot:

=============================  ======  =========================================================
cluster key                    type    as above, except
=============================  ======  =========================================================
``P:q:{CH}``, ``P:s:{CH}``     STREAM, ZSET
``P:i:{CH}:KEY``               STRING
``P:n:{CH}:OUTCOME:BUCKET``    STRING
``P:cel:{CH}:ID:N``            STRING  named by the channel too (a key of the message alone
                                       could sit in any slot)
``P:c:{CH}``                   SET     the channel set of one channel's slot: send.lua's KEYS[3]
                                       (it cannot reach a global set); holds CH
``P:channels``                 SET     every channel, for the readers of the whole: SADD as a
                                       command of its own before a process's first send to a
                                       channel (again every CHANNEL_REGISTRY_SECONDS)
``P:{w}``, ``P:{w}:ID``        ZSET,   the worker registry, one for the whole cluster, under the
                               STRING  tag ``{w}`` so that ``workers()``'s MGET is single-slot
``P:rate:{CH}``,               HASH,   flow control (``taskchan/flow/``): one channel's bucket,
``P:cc:{CH}:KEY``,             ZSET,   concurrency slots, last schedule slot and pause, under its
``P:sched:{CH}``,              STRING, tag like its messages
``P:paused:{CH}``              STRING
=============================  ======  =========================================================

**The rule for a new key on a cluster**: a key about one channel puts the
channel's tag ``{CH}`` right after its kind (``P:x:{CH}:...``) and is built by
a ``ClusterKeys`` method; a script touches only keys of one channel (its tag),
all passed in KEYS[]; a key about no channel (a registry, a schedule table)
gets a tag of its own (``P:{x}``) and is never passed to a script with a
channel's keys: write it with a command of its own.  Pipelines on a cluster
may not carry scripts or MGET (redis-py refuses them): run those one by one.

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
        self.cancelled = f"{prefix}:x"

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

    def rate(self, channel: str) -> str:
        return f"{self.prefix}:rate:{channel}"

    def concurrency(self, channel: str, key: str) -> str:
        return f"{self.prefix}:cc:{channel}:{key}"

    def schedule(self, channel: str) -> str:
        return f"{self.prefix}:sched:{channel}"

    def paused(self, channel: str) -> str:
        return f"{self.prefix}:paused:{channel}"

    def status(self, message_id: str) -> str:
        return f"{self.prefix}:st:{message_id}"

    def celery_starts(self, message_id: str, attempts_before: int, channel: str = "") -> str:
        return f"{self.prefix}:cel:{message_id}:{attempts_before}"

    def channel_set(self, channel: str) -> str:
        """send.lua's KEYS[3]: the set of channels it adds ``channel`` to."""
        return self.channels

    def channel_of_stream(self, key: str) -> str:
        """The channel whose stream is ``key`` (a reply of XREADGROUP names its streams)."""
        return key[len(self.stream("")) :]


class ClusterKeys(Keys):
    """The keys on a Redis Cluster: each channel's under its hash tag ``{CH}`` (table above)."""

    def __init__(self, prefix: str):
        super().__init__(prefix)
        self.workers = f"{prefix}:{{w}}"

    def stream(self, channel: str) -> str:
        return f"{self.prefix}:q:{{{channel}}}"

    def scheduled(self, channel: str) -> str:
        return f"{self.prefix}:s:{{{channel}}}"

    def idempotency(self, channel: str, key: str) -> str:
        return f"{self.prefix}:i:{{{channel}}}:{key}"

    def counter(self, channel: str, outcome: str, bucket: int) -> str:
        return f"{self.prefix}:n:{{{channel}}}:{outcome}:{bucket}"

    def worker(self, worker_id: str) -> str:
        return f"{self.workers}:{worker_id}"

    def celery_starts(self, message_id: str, attempts_before: int, channel: str = "") -> str:
        return f"{self.prefix}:cel:{{{channel}}}:{message_id}:{attempts_before}"

    def channel_set(self, channel: str) -> str:
        return f"{self.prefix}:c:{{{channel}}}"

    def rate(self, channel: str) -> str:
        return f"{self.prefix}:rate:{{{channel}}}"

    def concurrency(self, channel: str, key: str) -> str:
        return f"{self.prefix}:cc:{{{channel}}}:{key}"

    def schedule(self, channel: str) -> str:
        return f"{self.prefix}:sched:{{{channel}}}"

    def paused(self, channel: str) -> str:
        return f"{self.prefix}:paused:{{{channel}}}"

    def channel_of_stream(self, key: str) -> str:
        return key[len(self.stream("")) - 1 : -1]
