"""Flow control's state in process memory: the same contract as ``redis_flow.py``, for ``MemoryStore``.

Token buckets, concurrency slots, the last schedule slot fired and pauses,
each kept as its Redis key would hold it (``keys.py``), under the store's lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class FlowState:
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> (tokens, at ms)
    slots: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # (ch, key) -> member -> expiry ms
    last_slot: dict[str, int] = field(default_factory=dict)  # channel -> ms
    paused: dict[str, dict] = field(default_factory=dict)


class MemoryFlow:
    # Provided by MemoryStore: _lock, _channel(), _add(), _wake(); flow (a FlowState).

    async def take_tokens(self, channel, per_ms, capacity, wanted):
        now = time.time() * 1000
        with self._lock:
            tokens, at = self.flow.buckets.get(channel, (capacity, now))
            tokens = min(capacity, tokens + max(0.0, now - at) * per_ms)
            granted = min(wanted, int(tokens))
            tokens -= granted
            self.flow.buckets[channel] = (tokens, now)
        wait_ms = 0 if granted == wanted else max(1.0, (1 - tokens) / per_ms)
        return granted, wait_ms / 1000

    async def take_slots(self, channel, limit, lease_ms, holdings):
        now = time.time() * 1000
        out = []
        with self._lock:
            for key, member in holdings:
                held = self.flow.slots.setdefault((channel, key), {})
                for m in [m for m, expiry in held.items() if expiry <= now]:
                    del held[m]
                # limit 0 renews only (see slots.lua)
                taken = member in held or (limit > 0 and len(held) < limit)
                if taken:
                    held[member] = now + lease_ms
                out.append(taken)
        return out

    async def renew_slots(self, channel, lease_ms, holdings):
        await self.take_slots(channel, 0, lease_ms, holdings)

    async def release_slots(self, channel, holdings):
        with self._lock:
            for key, member in holdings:
                self.flow.slots.get((channel, key), {}).pop(member, None)

    async def fire_slot(self, channel, raw, message_id, slot_ms, *, catch_up=False):
        with self._lock:
            last = self.flow.last_slot.get(channel)
            if (last is not None and last >= slot_ms) or (last is None and catch_up):
                return False
            self.flow.last_slot[channel] = int(slot_ms)
            self._add(self._channel(channel), raw)
        self._wake()
        return True

    async def last_slots(self, channels):
        with self._lock:
            return {c: self.flow.last_slot[c] / 1000 for c in channels if c in self.flow.last_slot}

    def set_paused(self, channel, info):
        with self._lock:
            if info is None:
                self.flow.paused.pop(channel, None)
            else:
                self.flow.paused[channel] = dict(info)

    async def paused(self, channels):
        with self._lock:
            return {c: dict(self.flow.paused[c]) for c in channels if c in self.flow.paused}
