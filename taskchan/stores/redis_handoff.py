"""The Celery hand-off's keys on one Redis: idempotency claims and start counters.

Part of ``RedisStore`` (``redis.py``).  Sync, like their callers: a publish
runs in the sending thread (``handoff/publish.py``) and the Celery side in a
Celery worker's (``handoff/celery_side.py``).  The keys are ``P:i:CH:KEY``
and ``P:cel:ID:N`` (``keys.py``); the multi-step ones are scripts in ``lua/``.
"""

from __future__ import annotations

import functools

from .keys import CELERY_STARTS_TTL_SECONDS


class RedisHandoff:
    # Provided by RedisStore: client (sync redis-py), keys (keys.Keys), _scripts (lua/ by name).

    @functools.cached_property
    def _handoff_scripts(self) -> dict:
        return {name: self.client.register_script(self._scripts[name]) for name in ("handoff_claim", "handoff_release")}

    def handoff_claim(self, channel, idempotency_key, claim, ttl_ms):
        key = self.keys.idempotency(channel, idempotency_key)
        return self._handoff_scripts["handoff_claim"](keys=[key], args=[claim, int(ttl_ms)])

    def handoff_release(self, channel, idempotency_key, claim):
        key = self.keys.idempotency(channel, idempotency_key)
        self._handoff_scripts["handoff_release"](keys=[key], args=[claim])

    def handoff_record(self, channel, idempotency_key, message_id, ttl_ms):
        self.client.set(self.keys.idempotency(channel, idempotency_key), message_id, px=int(ttl_ms))

    def handoff_start(self, channel, message_id, attempts_before):
        counter = self.keys.celery_starts(message_id, attempts_before, channel)
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, CELERY_STARTS_TTL_SECONDS)
        return int(pipe.execute()[0])

    def handoff_end(self, channel, message_id, attempts_before, *, idempotency_key=None, idempotency_ms=None):
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.celery_starts(message_id, attempts_before, channel))
        if idempotency_key is not None and idempotency_ms is not None:
            pipe.pexpire(self.keys.idempotency(channel, idempotency_key), int(idempotency_ms))
        pipe.execute()
