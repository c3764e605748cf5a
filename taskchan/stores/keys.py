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
``P:channels``             SET     forever (a few bytes per channel)    send.lua, send_many.lua: every
                                                                         channel sent to
``P:q:CH``                 STREAM  entries deleted when acked           send.lua, send_many.lua, promote.lua,
                                                                         handback.lua
                                                                         (XADD); worker ack (XACK+XDEL)
  group ``workers``        group   with the stream                      worker start (XGROUP CREATE ... 0)
``P:q:CH:pN``              STREAM  deleted by fetch.lua once empty      as ``P:q:CH``, for the messages of
                                                                         priority N != 0 (-100..100); made
  group ``workers``        group   with the stream                      with its group by send.lua or
                                                                         promote.lua (XGROUP CREATE MKSTREAM)
``P:lv:CH``                ZSET    members removed by fetch.lua when    send.lua, promote.lua: the levels N
                                   their stream is empty                with a ``P:q:CH:pN`` (member and
                                                                         score N); fetch.lua reads them
                                                                         highest first
``P:s:CH``                 ZSET    members removed when promoted        send.lua (delay), reschedule.lua
                                                                         (retries); score = due, unix ms;
                                                                         a member of priority N != 0 is
                                                                         ``pN:`` + the envelope
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
``P:q:{CH}:pN``, ``P:lv:{CH}``  STREAM, ZSET  a level's stream is named inside fetch, reclaim and
                                       promote.lua from ``P:q:{CH}`` (KEYS[]): same tag, same slot
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
``P:st:{TAG}:ID``              HASH    the status record: a message sent to a cluster has an id
                                       ``HEX-TAG`` whose TAG hashes to its channel's slot
                                       (``slot_tags.py``), so send.lua writes the record in the
                                       channel's slot and ``status(ID)`` names it from the id
                                       alone; the worker's updates are HSET and PEXPIRE in its
                                       ack pipeline (no status.lua: no scripts in a cluster
                                       pipeline). An id of another shape has no record there
=============================  ======  =========================================================

**The rule for a new key on a cluster**: a key about one channel puts the
channel's tag ``{CH}`` right after its kind (``P:x:{CH}:...``) and is built by
a ``ClusterKeys`` method; a script touches only keys of one channel (its tag),
all passed in KEYS[]; a key about no channel (a registry, a schedule table)
gets a tag of its own (``P:{x}``) and is never passed to a script with a
channel's keys: write it with a command of its own.  Pipelines on a cluster
may not carry scripts or MGET (redis-py refuses them): run those one by one.

A Delivery's ``entry_id`` is the stream entry id, followed by ``~N`` for an
entry of level N != 0 (``entry_level``): ids are unique per stream only.
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

from ..priority import MAX_PRIORITY
from .slot_tags import tag_of

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


def entry_level(entry_id: str) -> tuple[str, int]:
    """(stream entry id, priority level) of a Delivery's ``entry_id``: an entry of level N != 0
    is named ``ID~N`` (ids are unique per stream only, and each level has its own)."""
    stream_id, _, level = entry_id.partition("~")
    return stream_id, int(level) if level else 0


def leveled(stream_id: str, level: int) -> str:
    """The Delivery ``entry_id`` of entry ``stream_id`` of level ``level`` (``entry_level``'s inverse)."""
    return f"{stream_id}~{level}" if level else stream_id


def listed_levels(members) -> list[int]:
    """The levels a ``P:lv:CH`` reply lists (members that are no level, written around taskchan, left out)."""
    if not isinstance(members, list):
        return []  # a key of another type lists nothing
    levels = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else str(member)
        if text.lstrip("-").isdigit() and str(int(text)) == text and 0 < abs(int(text)) <= MAX_PRIORITY:
            levels.append(int(text))
    return levels


def scheduled_member(sealed: str, level: int) -> str:
    """A ``P:s:CH`` member: the sealed envelope, behind ``pN:`` for level N != 0 (promote.lua reads it;
    neither JSON nor a Fernet token starts with ``p``)."""
    return f"p{level}:{sealed}" if level else sealed


class Keys:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.channels = f"{prefix}:channels"
        self.workers = f"{prefix}:w"
        self.cancelled = f"{prefix}:x"

    def stream(self, channel: str) -> str:
        return f"{self.prefix}:q:{channel}"

    def lane(self, channel: str, level: int) -> str:
        """The stream of ``channel``'s messages of priority ``level``: its own stream for 0."""
        return f"{self.stream(channel)}:p{level}" if level else self.stream(channel)

    def levels(self, channel: str) -> str:
        return f"{self.prefix}:lv:{channel}"

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

    def status(self, message_id: str) -> str | None:
        """The record of ``message_id``; None where no record can be named (a cluster's, below)."""
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

    def levels(self, channel: str) -> str:
        return f"{self.prefix}:lv:{{{channel}}}"

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

    def status(self, message_id: str) -> str | None:
        """``P:st:{TAG}:ID``, TAG read from the id (``slot_tags.py``); None for an id without one."""
        tag = tag_of(message_id)
        return None if tag is None else f"{self.prefix}:st:{{{tag}}}:{message_id}"
