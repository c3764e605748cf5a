"""Sending events to a message's watchers through the channel layer, in order, never failing a job.

One ``Pusher`` per worker: a queue and one task on the worker's loop that
``group_send``s each event in turn (so a message's last progress always
arrives before its outcome).  A layer that cannot be reached loses the event
with a log line; the watcher's consumer reads the status record again on its
own (``consumer.py``), so nothing is lost for good.

The in-memory layer (``runserver``) keeps its queues on the loop of the ASGI
server, and the in-process worker has a loop of its own: the first watcher
records its loop (``remember_home``) and events to that layer are handed to
it (asyncio queues are not thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from channels.layers import InMemoryChannelLayer, get_channel_layer

from ..conf import settings
from .events import LAYER_TYPE

logger = logging.getLogger("taskchan.progress")

#: events waiting to be sent, at most; past it the oldest progress is dropped, never an outcome
MAX_QUEUED = 10_000

_homes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # in-memory layer -> its server's loop


def remember_home(layer) -> None:
    """Called on a watcher's loop: that is where an in-memory layer's groups live."""
    if isinstance(layer, InMemoryChannelLayer):
        _homes[layer] = asyncio.get_running_loop()


async def group_send(group: str, event: dict, layer=None) -> None:
    """Send ``event`` to ``group``'s watchers on the project's layer (TASKCHAN_LAYER); raises what the layer raises."""
    layer = layer or get_channel_layer(settings.LAYER)
    if layer is None:
        return
    message = {"type": LAYER_TYPE, "event": event}
    home = _homes.get(layer)
    if home is not None and home is not asyncio.get_running_loop():
        if not home.is_closed():
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), home)
        return
    await layer.group_send(group, message)


class Pusher:
    """Events sent one after another from the worker's loop."""

    def __init__(self):
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0

    def bind(self) -> None:
        """On the worker's loop, before anything is pushed."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()

    def push(self, group: str, event: dict) -> None:
        """On the loop: queue ``event`` for ``group``."""
        if self._queue is None:
            return
        if self._queue.qsize() >= MAX_QUEUED and event["type"] == "progress":
            return  # a layer that far behind: later progress will do
        self._queue.put_nowait((group, event))

    def push_threadsafe(self, group: str, event: dict) -> None:
        """From a job thread."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self.push, group, event)
            except RuntimeError:  # the loop is closing: the process is exiting
                pass

    async def run(self) -> None:
        while True:
            group, event = await self._queue.get()
            try:
                await group_send(group, event)
                self.sent += 1
            except Exception as exc:  # a layer that is down must not stop the worker
                logger.warning("could not push %s of %s to its watchers: %s", event["type"], event["id"], exc)
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """At stop: wait up to ``timeout`` seconds for the queued events to go."""
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                logger.warning("%d progress event(s) not pushed at shutdown", self._queue.qsize())
