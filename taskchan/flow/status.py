"""What the queue overview and ``taskchan_status`` show of flow control, per channel.

Paused or not (and since when, by whom), the schedule with its last and next
firing, and the limits.  Read from each channel's home store in one round trip
per store and kind.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from ..consumer_table import get_consumer
from ..stores.base import ProducerStore
from ..text import duration
from .schedule import slot_iso


@dataclass(slots=True)
class FlowStatus:
    paused: dict | None = None  # since (unix time), by
    schedule: str = ""
    last_slot: float | None = None  # unix time of the last slot fired
    next_slot: float | None = None
    limits: str = ""  # "10/s, 2 at once per key", for people

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self, now: float) -> str:
        """One line for people ('' when the channel has no flow control and is not paused)."""
        parts = []
        if self.paused is not None:
            since = self.paused.get("since")
            ago = f" {duration(now - since)} ago" if isinstance(since, (int, float)) else ""
            by = f" by {self.paused['by']}" if self.paused.get("by") else ""
            parts.append(f"PAUSED{ago}{by}")
        if self.schedule:
            last = f"last {slot_iso(self.last_slot)}" if self.last_slot else "never fired"
            nxt = f", next in {duration(self.next_slot - now)}" if self.next_slot else ""
            parts.append(f"schedule {self.schedule} ({last}{nxt})")
        if self.limits:
            parts.append(self.limits)
        return "; ".join(parts)


async def read_flow(store: ProducerStore, channels) -> dict[str, FlowStatus]:
    """channel -> FlowStatus for ``channels`` (a channel with no consumer here shows its pause only)."""
    homes: dict[int, tuple[object, list[str]]] = {}
    for channel in channels:
        home = store.home(channel)
        homes.setdefault(id(home), (home, []))[1].append(channel)
    paused: dict[str, dict] = {}
    last: dict[str, float] = {}
    for home, group in homes.values():
        paused.update(await home.paused(group))
        scheduled = [c for c in group if (consumer := get_consumer(c)) and consumer.flow.schedule]
        last.update(await home.last_slots(scheduled))
    now = time.time()
    out = {}
    for channel in channels:
        status = FlowStatus(paused=paused.get(channel), last_slot=last.get(channel))
        consumer = get_consumer(channel)
        if consumer is not None:
            flow = consumer.flow
            if flow.schedule is not None:
                status.schedule = str(flow.schedule)
                status.next_slot = flow.schedule.after(now)
            status.limits = limits_text(flow)
        out[channel] = status
    return out


def limits_text(flow) -> str:
    parts = []
    if flow.rate_limit is not None:
        parts.append(f"rate {flow.rate_limit}")
    if flow.concurrency_limit is not None:
        per = " per key" if flow.concurrency_key is not None else ""
        parts.append(f"{flow.concurrency_limit} at once{per}")
    return ", ".join(parts)
