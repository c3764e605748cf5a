"""Channel layers whose ``taskchan.*`` channels are reliable.

Each class is the Channels layer a project already uses (channels_redis, or
channels' in-memory layer) with one addition, ``taskchan_store``: the reliable
store that holds every ``taskchan.*`` channel.  Websocket reply channels and
groups behave exactly as before.  ``layer.send("taskchan.x", {...})`` is routed
to the store through the same validation as ``taskchan.send``, so a message
sent around taskchan's API is still delivered reliably (or refused); so is a
``group_send`` to a group with ``taskchan.*`` members (``store_group_jobs``).
docs/migrating.md lists every way these layers differ from Channels' own on
``taskchan.*`` names, and why.

``RedisChannelLayer`` lives in ``redis_layer.py`` and is imported on first use
(PEP 562): a taskchan worker reaches its Redis store straight from the
settings (``stores/configured.py``) and never loads channels_redis, whose
optional encryption import alone costs a worker process about 7 MB.
"""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer

from .layer_mixin import TaskchanLayerMixin, sending_to_group
from .stores.memory import MemoryStore


class InMemoryChannelLayer(TaskchanLayerMixin, ChannelsInMemoryLayer):
    """channels' in-memory layer, with ``taskchan.*`` channels in a MemoryStore.

    Producers and workers must share the process: ``runserver`` runs workers
    in-process when this layer is configured.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.taskchan_store = MemoryStore()

    async def group_send(self, group, message):
        # channels' own group_send sends to each member through send(), which
        # stores a taskchan member's job (store_group_jobs) when it sees this.
        token = sending_to_group.set(group)
        try:
            await super().group_send(group, message)
        finally:
            sending_to_group.reset(token)


def __getattr__(name: str):
    if name == "RedisChannelLayer":
        from .redis_layer import RedisChannelLayer

        return RedisChannelLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
