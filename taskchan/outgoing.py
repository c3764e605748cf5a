"""A message on its way out: every check at the door, then the envelope that will be stored.

``build_outgoing`` is what ``send()``, ``send_on_commit`` and a dead letter
handed to Celery share: the channel name, the content (JSON, size), the send
options, then a fresh envelope and its JSON.  Nothing is stored here, so a
message refused at the door leaves no trace.  A channel that hands off to
Celery has further checks (``handoff.app.check``), which ``producer.py`` adds.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .envelope import Envelope, check_send_options, encode_content, validate_channel


class Outgoing(NamedTuple):
    """A validated message ready to store: its envelope, delay (ms) and the envelope's JSON."""

    envelope: Envelope
    delay_ms: int
    raw: str


def build_outgoing(
    channel: str,
    content: dict[str, Any],
    delay: float | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    reply_channel: str | None = None,
) -> Outgoing:
    """Check the channel, content and options as ``send()`` does, then build the envelope.

    Raises InvalidChannelName, ContentNotSerializable, MessageTooLarge or
    InvalidOption (ValueError/TypeError subclasses) for bad input.
    """
    validate_channel(channel)
    content_json = encode_content(content)
    check_send_options(delay, max_attempts, idempotency_key, reply_channel)
    envelope = Envelope.new(
        channel,
        content,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        reply_channel=reply_channel,
    )
    return Outgoing(envelope, int((delay or 0) * 1000), envelope.encode(content_json))
