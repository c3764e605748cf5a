"""The flow-control contract every store offers (``taskchan/flow/``); ``base.py``'s ``StoreBase`` includes it."""

from __future__ import annotations


class FlowStore:
    """Flow control's state for the channels whose home this store is (``taskchan/flow/``).

    Called on ``store.home(channel)``, so a sharded store keeps each
    channel's limits, schedule and pause with its messages.  Every method is
    one round trip for all the items it is given.
    """

    async def take_tokens(self, channel, per_ms: float, capacity: int, wanted: int) -> tuple[int, float]:
        """Take up to ``wanted`` tokens from ``channel``'s bucket (refilled at ``per_ms`` per ms, holding at
        most ``capacity``); (tokens taken, seconds until the next token is due, 0 when all were taken)."""
        raise NotImplementedError

    async def take_slots(self, channel, limit: int, lease_ms: int, holdings: list[tuple[str, str]]) -> list[bool]:
        """For each ``(key, member)``: hold one of ``key``'s ``limit`` slots for ``lease_ms``; whether it
        was taken (an existing holding counts as taken).  Holdings not renewed lapse."""
        raise NotImplementedError

    async def renew_slots(self, channel, lease_ms: int, holdings: list[tuple[str, str]]) -> None:
        """Keep ``holdings`` (``(key, member)``) held ``lease_ms`` more (a lapsed one is not taken again)."""
        raise NotImplementedError

    async def release_slots(self, channel, holdings: list[tuple[str, str]]) -> None:
        """Give ``holdings`` back."""
        raise NotImplementedError

    async def fire_slot(self, channel, raw, message_id, slot_ms: int, *, catch_up: bool = False) -> bool:
        """Queue ``raw`` for schedule slot ``slot_ms`` unless that slot (or a later one) fired already; with
        ``catch_up``, only if some slot fired before.  True when this call fired it."""
        raise NotImplementedError

    async def last_slots(self, channels) -> dict[str, float]:
        """channel -> unix time of its last fired schedule slot (channels never fired are left out)."""
        raise NotImplementedError

    def set_paused(self, channel, info: dict | None) -> None:
        """Pause ``channel`` (``info``: who paused it and when) or, with None, resume it."""
        raise NotImplementedError

    async def paused(self, channels) -> dict[str, dict]:
        """channel -> its pause info, for the paused ones among ``channels``."""
        raise NotImplementedError
