"""Message status records on one Redis (``P:st:ID``, ``keys.py``): written inside other steps, read whole.

A record is never written by a round trip of its own: send.lua starts it, and
the worker's updates ride in pipelines that already go to Redis (the batched
ack, a retry's reschedule).  What the fields mean is ``taskchan/tracking.py``'s;
this module only merges them and keeps the record alive.
"""

from __future__ import annotations

from itertools import chain

from ..text import compact_json
from .codec import Unreadable
from .notes import merged_notes
from .scripts import queue_evalsha


async def queue_notes(pipe, script, keys, notes, reruns: dict) -> None:
    """Add the notes (merged per message) to ``pipe``: one ``status.lua`` call for them all,
    a bare EVALSHA (``scripts.queue_evalsha``: no SCRIPT EXISTS before every batched ack)."""
    merged = merged_notes(notes)
    if not merged:
        return
    record_keys = [keys.status(note.message_id) for note in merged]
    items = [[str(int(note.ttl_ms)), *chain.from_iterable(note.fields.items())] for note in merged]
    # All the notes in one argument (status.lua's header says why).
    args = [compact_json(items)]
    queue_evalsha(pipe, script, record_keys, args, reruns)


class RedisStatus:
    """Mixed into ``RedisStore``: reading one record, and the updates' place in a step's pipeline
    (a cluster's are ``cluster_status.py``'s)."""

    async def queue_status(self, pipe, scripts, notes, reruns: dict) -> None:
        await queue_notes(pipe, scripts["status"], self.keys, notes, reruns)

    async def status_record(self, message_id):
        key = self.keys.status(message_id)
        if key is None:  # an id that names no record (on a cluster, one without a slot's tag)
            return None
        client, _ = self._aclient()
        record = await client.hgetall(key)
        if "x" in record:  # the sender's text, sealed like envelopes
            try:
                record["x"] = self.codec.unseal(record["x"])
            except Unreadable:
                del record["x"]
        return record or None
