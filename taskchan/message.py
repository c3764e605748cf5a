"""The ``message`` object a consumer receives."""

from __future__ import annotations

from asgiref.sync import async_to_sync

from .envelope import Envelope
from .exceptions import Cancelled
from .progress.report import check, current_slot


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

    __slots__ = ("envelope", "attempt", "_cancel", "_slot")

    def __init__(self, envelope: Envelope, attempt: int, cancel=None):
        self.envelope = envelope
        self.attempt = attempt
        self._cancel = cancel  # a threading.Event the worker sets, or None (never cancelled)
        # The running attempt's progress slot (taskchan/progress/report.py), kept
        # so that progress() works from any thread the consumer hands ``message`` to.
        slot = current_slot.get()
        self._slot = slot if slot is not None and slot.message_id == envelope.id else None

    @property
    def cancelled(self) -> bool:
        """Whether the message was cancelled while this attempt runs."""
        return self._cancel is not None and self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise ``taskchan.Cancelled`` if the message was cancelled: the attempt then ends as cancelled."""
        if self.cancelled:
            raise Cancelled()

    def progress(self, current, total=None, note=None) -> bool:
        """Report how far this attempt is: ``current`` of ``total`` (None: unknown), with a short ``note``.

        Cheap to call in a tight loop: only the latest value is kept, and the
        worker sends it on every TASKCHAN_PROGRESS_INTERVAL (and as the
        attempt ends) to the status record and to every browser watching
        (docs/progress.md).  Bad arguments raise ``taskchan.InvalidOption``.
        True when reported; False where no worker runs this attempt (a test
        calling the consumer directly), where it does nothing.  A message cancelled
        while it runs (``taskchan.cancel``) raises ``taskchan.Cancelled`` here.
        """
        self.check_cancelled()
        check(current, total, note)
        return self._slot.put(current, total, note) if self._slot is not None else False

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
