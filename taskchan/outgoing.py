"""A message on its way out: every check at the door, then the envelope that will be stored.

``build_outgoing`` is what ``send()``, ``send_on_commit`` and a dead letter
handed to Celery share: the channel name, the content (JSON, size), the send
options, then a fresh envelope and its JSON.  Nothing is stored here, so a
message refused at the door leaves no trace.  A channel that hands off to
Celery has further checks (``handoff.app.check``), which ``producer.py`` adds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from .envelope import Envelope, check_send_options, encode_content, validate_channel
from .exceptions import TaskchanError


class Outgoing(NamedTuple):
    """A validated message ready to store: its envelope, delay (ms), the envelope's JSON and its content's."""

    envelope: Envelope
    delay_ms: int
    raw: str
    content_json: str


def build_outgoing(
    channel: str,
    content: dict[str, Any],
    delay: float | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    reply_channel: str | None = None,
    new_id: Callable[[str], str] | None = None,
) -> Outgoing:
    """Check the channel, content and options as ``send()`` does, then build the envelope.

    Raises InvalidChannelName, ContentNotSerializable, MessageTooLarge or
    InvalidOption (ValueError/TypeError subclasses) for bad input.  The id is
    ``new_id(channel)`` (``store.new_message_id``), asked after the checks, else a fresh uuid4.
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
        message_id=new_id(channel) if new_id else None,
    )
    return Outgoing(envelope, int((delay or 0) * 1000), envelope.encode(content_json), content_json)


def build_many(
    channel: str,
    contents: list[dict[str, Any]],
    delay: float | None = None,
    max_attempts: int | None = None,
    reply_channel: str | None = None,
    new_id: Callable[[str], str] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """``build_outgoing`` for many contents with the same options: the delay (ms) and
    each message's ``(id, envelope JSON)``, in order.

    Every content is checked before anything is returned; a bad one raises the
    error ``build_outgoing`` would, its message prefixed with its position.
    The envelopes differ only in their id (one send time for the call), so one
    is encoded and the others are that text with their own id and content:
    ``new_id(channel)`` (``store.new_message_id``), else a fresh uuid4.
    """
    validate_channel(channel)
    check_send_options(delay, max_attempts, None, reply_channel)
    bodies = []
    for position, content in enumerate(contents):
        try:
            bodies.append(encode_content(content))
        except TaskchanError as exc:
            raise type(exc)(f"contents[{position}]: {exc}") from exc
    template = Envelope.new(channel, {}, max_attempts=max_attempts, reply_channel=reply_channel)
    template.id = ""
    # '{"v":1,"id":"","ch":...,"c":}': the id is the first string field, so the
    # first '"id":""' is it; the content goes before the closing brace.
    before, after = template.encode("")[:-1].split('"id":""', 1)
    built = []
    for body in bodies:
        message_id = new_id(channel) if new_id else uuid.uuid4().hex
        built.append((message_id, f'{before}"id":"{message_id}"{after}{body}}}'))
    return int((delay or 0) * 1000), built
