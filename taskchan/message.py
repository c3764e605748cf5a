"""The ``message`` object a consumer receives."""

from __future__ import annotations

from asgiref.sync import async_to_sync

from .envelope import Envelope
from .exceptions import Cancelled


class ReplyChannel:
    """The channel a producer asked answers on (e.g. a websocket consumer's
    ``self.channel_name``), sent through the channel layer as in Channels 1."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"<ReplyChannel {self.name}>"

    async def asend(self, content: dict) -> None:
        from channels.layers import get_channel_layer

        from .conf import settings

        await get_channel_layer(settings.LAYER).send(self.name, content)

    def send(self, content: dict) -> None:
        async_to_sync(self.asend)(content)


class Message:
    """One delivery of a message to its consumer.

    ``content`` is the dict that was sent, ``id`` the message id (the same on
    every attempt), ``channel`` its channel and ``attempt`` this attempt's
    number, from 1.  ``reply_channel`` is None unless the sender gave one.
    ``cancelled`` turns true while the job runs if ``taskchan.cancel(id)`` is
    called (the worker learns it once per lease renewal period).
    """

    __slots__ = ("envelope", "attempt", "_cancel")

    def __init__(self, envelope: Envelope, attempt: int, cancel=None):
        self.envelope = envelope
        self.attempt = attempt
        self._cancel = cancel  # a threading.Event the worker sets, or None (never cancelled)

    @property
    def cancelled(self) -> bool:
        """Whether the message was cancelled while this attempt runs."""
        return self._cancel is not None and self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise ``taskchan.Cancelled`` if the message was cancelled: the attempt then ends as cancelled."""
        if self.cancelled:
            raise Cancelled()

    @property
    def content(self) -> dict:
        return self.envelope.content

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def channel(self) -> str:
        return self.envelope.channel

    @property
    def sent_at(self) -> float:
        return self.envelope.sent_at

    @property
    def reply_channel(self) -> ReplyChannel | None:
        name = self.envelope.reply_channel
        return ReplyChannel(name) if name else None

    def __repr__(self):
        return f"<Message {self.channel} {self.id} attempt {self.attempt}>"
