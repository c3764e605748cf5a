"""The envelope: what taskchan stores for one message, and its JSON form.

An envelope travels through Redis as one JSON string.  Its fields:

``v``   format version (1)
``id``  message id, a uuid4 hex string; the same across retries
``ch``  channel name
``c``   the content dict the producer sent
``n``   attempts already made before this delivery (0 when first sent)
``ma``  max_attempts override from send(), or null for the consumer's own
``ik``  idempotency key, or null
``rc``  reply channel name, or null
``t``   time send() accepted the message (unix seconds)
``e``   one ``{"type", "message", "at", "attempt"}`` per failed attempt
``tb``  the last failed attempt's traceback, or null
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .conf import settings
from .exceptions import ContentNotSerializable, InvalidChannelName, MessageTooLarge

# Channels' own rule for a channel name (channels.layers.BaseChannelLayer),
# narrowed to names under "taskchan.": the worker only serves those.
CHANNEL_NAME_RE = re.compile(r"^taskchan\.[a-zA-Z\d\-_.]+\Z")  # \Z: "$" would let a trailing newline in
MAX_NAME_LENGTH = 100  # channels' limit
MAX_ERRORS_KEPT = 25  # per-attempt errors carried in an envelope
MAX_TRACEBACK_CHARS = 16_000

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class MalformedEnvelope(ValueError):
    """Raised by decode(): a stored message is not a taskchan envelope."""


def check_max_attempts(max_attempts: Any) -> None:
    """``max_attempts`` must be None or a positive int (not a bool); ValueError otherwise."""
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")


def validate_channel(channel: Any) -> str:
    if not isinstance(channel, str):
        raise InvalidChannelName(
            f"Channel name must be a str, got {type(channel).__name__}: "
            "use 'taskchan.<name>', e.g. 'taskchan.thumbnails'."
        )
    if len(channel) >= MAX_NAME_LENGTH or not CHANNEL_NAME_RE.match(channel) or ".." in channel:
        raise InvalidChannelName(
            f"Invalid taskchan channel name {channel!r}: it must start with 'taskchan.', "
            f"be shorter than {MAX_NAME_LENGTH} characters and use only ASCII letters, "
            "digits, '-', '_' and '.', e.g. 'taskchan.thumbnails'."
        )
    return channel


def encode_content(content: Any) -> str:
    """Validate content and return its JSON text. Raises before anything is stored."""
    if not isinstance(content, dict):
        raise ContentNotSerializable(
            f"Message content must be a dict, got {type(content).__name__}: "
            "wrap it, e.g. {'value': ...}."
        )
    try:
        text = _dumps(content)
    except (TypeError, ValueError) as exc:
        raise ContentNotSerializable(
            f"Message content is not JSON-serialisable ({exc}): send ids and plain "
            "values (str, int, float, bool, None, list, dict), not objects."
        ) from exc
    limit = settings.MAX_CONTENT_BYTES
    size = len(text.encode())
    if size > limit:
        raise MessageTooLarge(
            f"Message content is {size} bytes of JSON, over the limit of {limit} "
            "(TASKCHAN_MAX_CONTENT_BYTES): store the data elsewhere (a model, a file) "
            "and send its key."
        )
    # json.dumps silently turns int keys into strings and tuples into lists; a
    # consumer would then see different content than was sent.  Refuse instead.
    if json.loads(text) != content:
        raise ContentNotSerializable(
            "Message content does not survive JSON unchanged (non-str dict keys or "
            "tuples?): use str keys and lists."
        )
    return text


@dataclass(slots=True)
class Envelope:
    id: str
    channel: str
    content: dict
    attempts_before: int = 0
    max_attempts: int | None = None
    idempotency_key: str | None = None
    reply_channel: str | None = None
    sent_at: float = 0.0
    errors: list[dict] = field(default_factory=list)
    traceback: str | None = None

    @classmethod
    def new(cls, channel, content, *, max_attempts=None, idempotency_key=None, reply_channel=None):
        return cls(
            id=uuid.uuid4().hex,
            channel=channel,
            content=content,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            reply_channel=reply_channel,
            sent_at=time.time(),
        )

    def encode(self, content_json: str | None = None) -> str:
        """JSON text of the envelope; ``content_json`` saves re-encoding validated content."""
        head = _dumps(
            {
                "v": 1,
                "id": self.id,
                "ch": self.channel,
                "n": self.attempts_before,
                "ma": self.max_attempts,
                "ik": self.idempotency_key,
                "rc": self.reply_channel,
                "t": self.sent_at,
                "e": self.errors,
                "tb": self.traceback,
            }
        )
        body = content_json if content_json is not None else _dumps(self.content)
        return f'{head[:-1]},"c":{body}}}'

    def failed(self, attempt: int, exc_type: str, message: str, traceback: str | None) -> Envelope:
        """The envelope for the next attempt after a failed one."""
        error = {"type": exc_type, "message": message[:2000], "at": time.time(), "attempt": attempt}
        return Envelope(
            id=self.id,
            channel=self.channel,
            content=self.content,
            attempts_before=attempt,
            max_attempts=self.max_attempts,
            idempotency_key=self.idempotency_key,
            reply_channel=self.reply_channel,
            sent_at=self.sent_at,
            errors=[*self.errors, error][-MAX_ERRORS_KEPT:],
            traceback=traceback[-MAX_TRACEBACK_CHARS:] if traceback else self.traceback,
        )


def decode(raw: str | bytes, channel: str) -> Envelope:
    """Parse a stored envelope; raise MalformedEnvelope saying what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise MalformedEnvelope(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise MalformedEnvelope("not a taskchan envelope (no 'v': 1); was it sent around taskchan.send()?")
    try:
        env = Envelope(
            id=data["id"],
            channel=data["ch"],
            content=data["c"],
            attempts_before=data.get("n", 0),
            max_attempts=data.get("ma"),
            idempotency_key=data.get("ik"),
            reply_channel=data.get("rc"),
            sent_at=data.get("t", 0.0),
            errors=data.get("e") or [],
            traceback=data.get("tb"),
        )
    except KeyError as exc:
        raise MalformedEnvelope(f"envelope has no {exc.args[0]!r} field") from None
    if not isinstance(env.id, str) or not env.id:
        raise MalformedEnvelope("envelope id must be a non-empty string")
    if env.channel != channel:
        raise MalformedEnvelope(f"envelope names channel {env.channel!r} but arrived on {channel!r}")
    if not isinstance(env.content, dict):
        raise MalformedEnvelope("envelope content is not a JSON object")
    if not isinstance(env.attempts_before, int) or env.attempts_before < 0:
        raise MalformedEnvelope("envelope attempt count is not a non-negative integer")
    if env.max_attempts is not None and (not isinstance(env.max_attempts, int) or env.max_attempts < 1):
        raise MalformedEnvelope("envelope max_attempts is not a positive integer")
    return env
