"""``ProgressConsumer``: the websocket a page watches its messages through (docs/progress.md).

The page sends ``{"type": "subscribe", "token": ...}`` (a ``progress_token``;
several may be sent on one socket).  The consumer joins each named message's
group, sends where it is now (a ``state`` event from ``taskchan.astatus``),
then forwards every event the workers push (``events.py``) until the outcome.
A refused token gets an ``error`` event, then the socket is closed with
CLOSE_EXPIRED or CLOSE_FORBIDDEN (the page should not reconnect with it).

Pushes are the fast path, not the only one: every TASKCHAN_PROGRESS_CHECK
seconds the consumer reads the status of the messages it watches that have
not ended, and sends a ``state`` event when it changed.  That covers a
message whose consumer never reports progress (its success is not pushed),
an event lost with a layer that did not answer, and a worker that died.

``{"type": "subscribe", "overview": true}`` from a staff user who may view the
queue overview joins the admin overview's group instead (``overview.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from ..conf import settings
from ..tracking import FAILED, SUCCEEDED, astatus
from . import events
from .push import remember_home
from .token import BadToken, read_token

logger = logging.getLogger("taskchan.progress")

#: close codes (4000-4999 are the application's): a token that expired, one refused outright, a bad frame
CLOSE_EXPIRED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400
#: most messages one socket may watch
MAX_WATCHED = 100
ENDED = frozenset({SUCCEEDED, FAILED, "succeeded", "failed"})


class ProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.watching: dict[str, dict | None] = {}  # message id -> the last state event sent (None: ended)
        self.overview = False
        self._checker: asyncio.Task | None = None
        remember_home(self.channel_layer)
        await self.accept()

    async def disconnect(self, code):
        if self._checker is not None:
            self._checker.cancel()
        for message_id in getattr(self, "watching", {}):
            await self.channel_layer.group_discard(events.group_name(message_id), self.channel_name)
        if getattr(self, "overview", False):
            await self.channel_layer.group_discard(events.OVERVIEW_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict) or content.get("type") != "subscribe":
            await self._refuse('send {"type": "subscribe", "token": ...}', CLOSE_BAD_REQUEST)
        elif content.get("overview") is True:
            await self._subscribe_overview()
        else:
            await self._subscribe(content.get("token"))

    async def _refuse(self, error: str, code: int) -> None:
        await self.send_json({"type": "error", "error": error, "code": code})
        await self.close(code=code)

    async def _subscribe(self, token) -> None:
        try:
            message_ids = read_token(token)
        except BadToken as exc:
            await self._refuse(str(exc), CLOSE_EXPIRED if exc.expired else CLOSE_FORBIDDEN)
            return
        fresh = [m for m in message_ids if m not in self.watching]
        if len(self.watching) + len(fresh) > MAX_WATCHED:
            await self._refuse(f"one socket watches at most {MAX_WATCHED} messages", CLOSE_BAD_REQUEST)
            return
        for message_id in fresh:
            # Join first, then read: an update between the two is sent twice, never missed.
            await self.channel_layer.group_add(events.group_name(message_id), self.channel_name)
            self.watching[message_id] = {}
        for message_id in message_ids:
            await self._check(message_id, force=True)
        if self._checker is None:
            self._checker = asyncio.ensure_future(self._check_periodically())

    async def _check(self, message_id: str, force: bool = False) -> None:
        """Send where ``message_id`` is now, when it changed since the last ``state`` sent (or ``force``)."""
        try:
            event = events.state_event(await astatus(message_id))
        except Exception as exc:  # a store that does not answer: the next check tries again
            logger.warning("could not read the status of %s for its watcher: %s", message_id, exc)
            return
        if force or event != self.watching.get(message_id):
            await self.send_json(event)
        self.watching[message_id] = None if event["state"] in ENDED else event

    async def _check_periodically(self) -> None:
        while True:
            await asyncio.sleep(settings.PROGRESS_CHECK)
            for message_id, last in list(self.watching.items()):
                if last is not None:
                    await self._check(message_id)

    async def taskchan_progress(self, message):
        """A worker's event, from the channel layer."""
        event = message.get("event") or {}
        if event.get("type") == "changed":
            if self.overview:
                await self.send_json(event)
            return
        message_id = event.get("id")
        if message_id not in self.watching:
            return
        await self.send_json(event)
        if event.get("type") in ENDED:
            self.watching[message_id] = None  # ended: no more checks

    async def _subscribe_overview(self) -> None:
        user = self.scope.get("user")
        allowed = user is not None and await sync_to_async(_may_view_overview)(user)
        if not allowed:
            await self._refuse("the queue overview is for staff who may view it", CLOSE_FORBIDDEN)
            return
        self.overview = True
        await self.channel_layer.group_add(events.OVERVIEW_GROUP, self.channel_name)
        await self.send_json({"type": "subscribed", "overview": True})


def _may_view_overview(user) -> bool:
    with contextlib.suppress(Exception):
        return bool(user.is_active and user.is_staff and user.has_perm("taskchan.view_queue_overview"))
    return False
