"""Message status records on a Redis Cluster (``P:st:{TAG}:ID``, ``keys.py``; ``slot_tags.py``).

The records are the ones ``redis_status.py`` keeps on one Redis, written in
the same steps; what a cluster changes:

- the message id names its channel's slot (``new_message_id``), so the record
  send.lua writes sits in the slot of the channel's keys, and a reader that
  holds only the id finds it;
- a send whose id names no slot, or another one (an id made before, or for
  another store), stores its message without a record: send.lua's step must
  stay on one slot;
- the worker's updates are HSET and PEXPIRE commands in its ack pipeline: the
  cluster client pipelines no scripts (status.lua), but sends each command to
  its slot's master;
- a retry's reschedule is a script: its update goes beside it, not in its pipeline.
"""

from __future__ import annotations

import asyncio

from .notes import merged_notes
from .slot_tags import slot_of, tagged_id


class ClusterStatus:
    """Mixed into ``ClusterStore``, before ``RedisStore``."""

    def new_message_id(self, channel: str) -> str:
        return tagged_id(slot_of(self.keys.stream(channel)))

    def send_args(self, channel, raw, message_id, **options):
        record = self.keys.status(message_id)
        if record is None or slot_of(record) != slot_of(self.keys.stream(channel)):
            options = {**options, "status_ms": 0, "record": None}
        keys, args = super().send_args(channel, raw, message_id, **options)
        if not options.get("status_ms"):
            # send.lua's KEYS[4], the record: untouched without one, named in the channel's slot
            keys[3] = keys[1]
        return keys, args

    async def queue_status(self, pipe, scripts, notes, reruns: dict) -> None:
        """Plain commands, no script: nothing to note in ``reruns``."""
        for note in merged_notes(notes):
            key = self.keys.status(note.message_id)
            if key is None:  # an id without a tag (sent before records were kept here): no record
                continue
            if note.fields:
                pipe.hset(key, mapping=note.fields)
            pipe.pexpire(key, int(note.ttl_ms))

    async def reschedule(self, delivery, raw, delay_ms, *, idempotency_ms=0, note=None):
        if note is None:
            return await super().reschedule(delivery, raw, delay_ms, idempotency_ms=idempotency_ms)
        client, scripts = self._aclient()
        pipe = client.pipeline(transaction=False)
        await self.queue_status(pipe, scripts, [note], {})
        done, _ = await asyncio.gather(
            super().reschedule(delivery, raw, delay_ms, idempotency_ms=idempotency_ms),
            pipe.execute(),
        )
        return done
