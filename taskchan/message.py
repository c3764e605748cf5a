"""The ``message`` object a consumer receives."""

from __future__ import annotations

from asgiref.sync import async_to_sync

from .envelope import Envelope


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
    """

    __slots__ = ("envelope", "attempt")

    def __init__(self, envelope: Envelope, attempt: int):
        self.envelope = envelope
        self.attempt = attempt

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
