"""The Redis store's bulk send: many messages in one round trip, a script call per channel's batch.

``send_many`` (the public one in ``taskchan/bulk.py``, the admin's bulk retry,
the outbox sweep) hands the store ``(channel, envelope JSON, message id,
options)`` items.  Consecutive items of one channel become one call of
``send_many.lua`` (at most ``SCRIPT_BATCH`` messages each), and every call of
the whole send goes in one pipeline: one round trip per ``PIPELINE``
messages.  An item whose options hold a status record extra (``record``, the
django.tasks backend's) or a priority other than 0 (its level's stream and
the level listing are ``send.lua``'s to write) goes through ``send.lua`` in
the same pipeline.

Why not a pipeline of ``send.lua`` calls: per message that packs fourteen
arguments on the client and starts a script in Redis, which together cost
more than the message's writes; batching them is what makes ``send_many``
several times a loop of ``send()`` (``bench/``: ``send_many/send loop``).
"""

from __future__ import annotations

from itertools import groupby

from . import replicas

#: messages per send_many.lua call: a call holds Redis for about as long as
#: that many sends take (a few ms per thousand), so other clients are not kept waiting long
SCRIPT_BATCH = 1_000
#: messages per pipeline (one round trip); 10,000 envelopes of a few hundred
#: bytes are a few MB, well within what one pipeline should carry
PIPELINE = 10_000


def _batch_args(store, channel: str, batch: list) -> tuple[list, list]:
    """KEYS and ARGV of one send_many.lua call for ``batch``, items of ``channel``."""
    keys = store.keys
    stream = keys.stream(channel)
    status_ms = batch[0][3].get("status_ms", 0)
    call_keys = [keys.scheduled(channel), keys.channel_set(channel)]
    args = [channel, int(status_ms)]
    for _, raw, message_id, options in batch:
        delay_ms = int(options.get("delay_ms", 0))
        idempotency_key = options.get("idempotency_key")
        call_keys += (stream, keys.status(message_id))
        if idempotency_key is not None:
            call_keys.append(keys.idempotency(channel, idempotency_key))
        idempotency_ms = int(options.get("idempotency_ms", 0)) + delay_ms
        args += (store.codec.seal(raw), message_id, delay_ms, idempotency_ms, 0 if idempotency_key is None else 1)
    return call_keys, args


def _calls(items: list) -> list[tuple[str, list]]:
    """``items`` cut into calls: ("many", batch) for a run of one channel with one
    status lifetime, ("one", [item]) for an item with a record extra or a priority."""

    def kind(item):
        options = item[3]
        if "record" in options or options.get("priority"):
            return ("one", id(item))
        return ("many", item[0], options.get("status_ms", 0))

    calls = []
    for key, run in groupby(items, key=kind):
        run = list(run)
        if key[0] == "one":
            calls.append(("one", run))
        else:
            calls += [("many", run[i : i + SCRIPT_BATCH]) for i in range(0, len(run), SCRIPT_BATCH)]
    return calls


def send_many(store, send_script, many_script, items: list) -> list[str]:
    """Store ``items`` on ``store``; their ids in order (an earlier id where an idempotency key was held)."""
    ids: list[str] = []
    for start in range(0, len(items), PIPELINE):
        pipe = store.client.pipeline(transaction=False)
        for kind, batch in _calls(items[start : start + PIPELINE]):
            if kind == "one":
                channel, raw, message_id, options = batch[0]
                keys, args = store.send_args(channel, raw, message_id, **options)
                send_script(keys=keys, args=args, client=pipe)
            else:
                keys, args = _batch_args(store, batch[0][0], batch)
                many_script(keys=keys, args=args, client=pipe)
        durable = replicas.wanted()
        if durable:  # one WAIT covers every send before it on this connection
            pipe.execute_command(*replicas.wait_args())
        replies = pipe.execute()
        if durable:
            replicas.check_acknowledged(int(replies.pop()), store)
        for reply in replies:
            ids += reply if isinstance(reply, list) else [reply]
    return ids
