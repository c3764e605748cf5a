"""The envelope: what taskchan stores for one message, and its JSON form.

An envelope travels through Redis as one JSON string.  Its fields:

``v``   format version (1)
``id``  message id, a uuid4 hex string (``-TAG`` after it on a cluster); the same across retries
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
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .conf import settings
from .exceptions import ContentNotSerializable, InvalidChannelName, InvalidOption, MessageTooLarge
from .text import compact_json, is_storable_text, is_utf8, shown, strict_json

# Channels' own rule for a channel name (channels.layers.BaseChannelLayer),
# narrowed to names under "taskchan.": the worker only serves those.  ASCII
# only: "\d" would match any Unicode digit ("taskchan.١٢").  "\Z": "$" would
# let a trailing newline in.
CHANNEL_NAME_RE = re.compile(r"^taskchan\.[a-zA-Z0-9\-_.]+\Z")
# A reply channel is any Channels channel name (a websocket consumer's
# ``self.channel_name`` is "specific.<id>!<id>"), ASCII only.
REPLY_CHANNEL_RE = re.compile(r"^[a-zA-Z0-9\-_.]+(![a-zA-Z0-9\-_.]*)?\Z")
MAX_NAME_LENGTH = 100  # channels' limit: names are shorter than this
MAX_ERRORS_KEPT = 25  # per-attempt errors carried in an envelope
MAX_TRACEBACK_CHARS = 16_000

# -- bounds at the door (docs/delivery.md lists them) --------------------------
#: largest ``max_attempts`` send() and @consumer accept; every database column holds it
MAX_ATTEMPTS_LIMIT = 10_000
#: longest ``delay`` send() accepts, in seconds (10 years of 365 days)
MAX_DELAY_SECONDS = 10 * 365 * 86400
#: longest idempotency key, in characters
MAX_IDEMPOTENCY_KEY_LENGTH = 200
#: deepest nesting of content: the content dict is level 1, ``{"a": [1]}`` has 2
MAX_CONTENT_DEPTH = 100
#: what decode() accepts in a stored envelope, past the door's bounds (an older
#: version, a hand-edit): numbers every database column holds, times a datetime holds
MAX_STORED_INT = 2**31 - 1
_LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31, datetime's last day



class MalformedEnvelope(ValueError):
    """Raised by decode(): a stored message is not a taskchan envelope."""


def check_max_attempts(max_attempts: Any) -> None:
    """``max_attempts`` must be None or an int (not a bool) from 1 to MAX_ATTEMPTS_LIMIT; InvalidOption otherwise."""
    if max_attempts is not None and not _is_int_in(max_attempts, 1, MAX_ATTEMPTS_LIMIT):
        raise InvalidOption(
            f"max_attempts must be a positive integer of at most {MAX_ATTEMPTS_LIMIT:,}, got {max_attempts!r}"
        )


def check_seconds(name: str, value: Any) -> None:
    """``value`` must be None or a number of seconds from 0 to MAX_DELAY_SECONDS; InvalidOption otherwise."""
    if value is not None and not (
        not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= MAX_DELAY_SECONDS
    ):  # "0 <= nan" is False: NaN is refused too
        raise InvalidOption(
            f"{name} must be a finite number of seconds >= 0 and at most {MAX_DELAY_SECONDS:,} "
            f"(10 years), got {value!r}"
        )


def check_send_options(delay: Any, max_attempts: Any, idempotency_key: Any, reply_channel: Any) -> None:
    """The options of send(), send_on_commit() and the layer's send(), checked against their bounds."""
    check_seconds("delay", delay)
    check_max_attempts(max_attempts)
    if idempotency_key is not None and not (
        isinstance(idempotency_key, str)
        and 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH
        and is_storable_text(idempotency_key)
    ):
        raise InvalidOption(
            f"idempotency_key must be a non-empty str of at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters "
            "(valid Unicode, no NUL character)"
        )
    if reply_channel is not None:
        validate_reply_channel(reply_channel)


def validate_channel(channel: Any) -> str:
    if not isinstance(channel, str):
        raise InvalidChannelName(
            f"Channel name must be a str, got {type(channel).__name__}: "
            "use 'taskchan.<name>', e.g. 'taskchan.thumbnails'."
        )
    if len(channel) >= MAX_NAME_LENGTH or not CHANNEL_NAME_RE.match(channel) or ".." in channel:
        raise InvalidChannelName(
            f"Invalid taskchan channel name {shown(channel)}: it must start with 'taskchan.', "
            f"be shorter than {MAX_NAME_LENGTH} characters and use only ASCII letters, "
            "digits, '-', '_' and '.', e.g. 'taskchan.thumbnails'."
        )
    return channel


def validate_reply_channel(name: Any) -> str:
    """A reply channel must be a Channels channel name (ASCII, shorter than 100 characters)."""
    if not isinstance(name, str) or len(name) >= MAX_NAME_LENGTH or not REPLY_CHANNEL_RE.match(name):
        given = shown(name) if isinstance(name, str) else f"a {type(name).__name__}"
        raise InvalidChannelName(
            f"reply_channel must be a channel name (str) shorter than {MAX_NAME_LENGTH} characters of "
            f"ASCII letters, digits, '-', '_' and '.', with at most one '!' (as a consumer's "
            f"self.channel_name), got {given}."
        )
    return name


def encode_content(content: Any) -> str:
    """Validate content and return its JSON text. Raises before anything is stored.

    Any reason JSON cannot carry the content (an object, NaN, a lone surrogate,
    a circular reference, nesting past MAX_CONTENT_DEPTH, ...) is
    ContentNotSerializable; nothing else escapes.
    """
    if not isinstance(content, dict):
        raise ContentNotSerializable(
            f"Message content must be a dict, got {type(content).__name__}: "
            "wrap it, e.g. {'value': ...}."
        )
    try:
        text = compact_json(content)
    except RecursionError:
        raise _too_deep() from None
    except Exception as exc:  # TypeError, ValueError (NaN, circular, a huge int), or an object's own error
        raise ContentNotSerializable(
            f"Message content is not JSON-serialisable ({type(exc).__name__}: {exc}): send ids and "
            "plain values (str, int, float, bool, None, list, dict), not objects."
        ) from exc
    if _nested_too_deep(text, content):
        raise _too_deep()
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise ContentNotSerializable(
            "Message content holds a string that is not valid Unicode (a lone surrogate such as "
            "'\\ud800'): JSON text must be UTF-8. Decode bytes properly before sending."
        ) from None
    limit = settings.MAX_CONTENT_BYTES
    if size > limit:
        raise MessageTooLarge(
            f"Message content is {size} bytes of JSON, over the limit of {limit} "
            "(TASKCHAN_MAX_CONTENT_BYTES): store the data elsewhere (a model, a file) "
            "and send its key."
        )
    # json.dumps silently turns int keys into strings and tuples into lists; a
    # consumer would then see different content than was sent.  Refuse instead.
    try:
        same = json.loads(text) == content
    except Exception:  # a value whose own __eq__ raises
        same = False
    if not same:
        raise ContentNotSerializable(
            "Message content does not survive JSON unchanged (non-str dict keys or "
            "tuples?): use str keys and lists."
        )
    return text


def _too_deep() -> ContentNotSerializable:
    return ContentNotSerializable(
        f"Message content is nested deeper than {MAX_CONTENT_DEPTH} levels of dicts and lists: "
        "flatten it, or store it elsewhere and send its key."
    )


def _nested_too_deep(text: str, value: Any) -> bool:
    """Whether ``value`` (whose JSON is ``text``) nests deeper than MAX_CONTENT_DEPTH.

    Counting brackets (at C speed) settles almost every message: fewer than
    the limit cannot nest past it.  Only then is the structure walked, without
    recursion.  Brackets inside strings only make the count larger, never wrong.
    """
    if text.count("[") + text.count("{") <= MAX_CONTENT_DEPTH:
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_CONTENT_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _is_int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


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
    def new(cls, channel, content, *, max_attempts=None, idempotency_key=None, reply_channel=None, message_id=None):
        return cls(
            id=message_id or uuid.uuid4().hex,
            channel=channel,
            content=content,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            reply_channel=reply_channel,
            sent_at=time.time(),
        )

    def encode(self, content_json: str | None = None) -> str:
        """JSON text of the envelope; ``content_json`` saves re-encoding validated content."""
        head = compact_json(
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
        body = content_json if content_json is not None else compact_json(self.content)
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
    """Parse a stored envelope; raise MalformedEnvelope saying what is wrong.

    Nothing else escapes, whatever ``raw`` holds: an envelope that decodes
    holds only values within the bounds send() enforces, so everything
    downstream (metrics, retries, the dead-letter row) can handle it.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise MalformedEnvelope("not UTF-8 text: the stored bytes cannot be a JSON envelope") from None
    if not isinstance(raw, str):
        raise MalformedEnvelope(f"not text but {type(raw).__name__}")
    if not raw.isascii() and not is_utf8(raw):
        # Redis handed us bytes that are not UTF-8 (kept as surrogates by the client).
        raise MalformedEnvelope("not UTF-8 text: the stored bytes cannot be a JSON envelope")
    try:
        data = strict_json(raw)
    except RecursionError:
        raise MalformedEnvelope(
            f"nested too deeply to read (content may nest at most {MAX_CONTENT_DEPTH} levels)"
        ) from None
    except (ValueError, TypeError) as exc:
        raise MalformedEnvelope(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise MalformedEnvelope("not a taskchan envelope (no 'v': 1); was it sent around taskchan.send()?")
    for key in ("id", "ch", "c"):
        if key not in data:
            raise MalformedEnvelope(f"envelope has no {key!r} field")
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
    if problem := _problem(env, channel, raw):
        raise MalformedEnvelope(problem)
    if "\\u" in raw and not is_utf8(compact_json(data)):
        # "\\ud800" in JSON text is ASCII, but decodes to a lone surrogate
        # that no UTF-8 text (Redis, the database, a retry) can hold.
        raise MalformedEnvelope("envelope holds a lone surrogate (text that is not valid Unicode)")
    return env


def _problem(env: Envelope, channel: str, raw: str) -> str:
    """What makes a parsed envelope unusable, or ''."""
    if not isinstance(env.id, str) or not 0 < len(env.id) <= 64:
        return "envelope id must be a non-empty string of at most 64 characters"
    if env.channel != channel:
        return f"envelope names channel {shown(str(env.channel))} but arrived on {channel!r}"
    if not isinstance(env.content, dict):
        return "envelope content is not a JSON object"
    if not _is_int_in(env.attempts_before, 0, MAX_STORED_INT):
        return f"envelope attempt count is not an integer from 0 to {MAX_STORED_INT:,}"
    if env.max_attempts is not None and not _is_int_in(env.max_attempts, 1, MAX_STORED_INT):
        return f"envelope max_attempts is not an integer from 1 to {MAX_STORED_INT:,}"
    if not _is_timestamp(env.sent_at):
        return "envelope send time ('t') is not a unix time in seconds"
    if env.idempotency_key is not None and not (
        isinstance(env.idempotency_key, str) and 0 < len(env.idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH
        and "\x00" not in env.idempotency_key
    ):
        return f"envelope idempotency key is not a str of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
    if env.reply_channel is not None and not (
        isinstance(env.reply_channel, str) and len(env.reply_channel) < MAX_NAME_LENGTH
        and REPLY_CHANNEL_RE.match(env.reply_channel)
    ):
        return "envelope reply channel is not a channel name"
    if env.traceback is not None and not isinstance(env.traceback, str):
        return "envelope traceback is not a string"
    if not isinstance(env.errors, list) or not all(map(_is_error, env.errors)):
        return "envelope errors are not a list of {type, message, at, attempt} objects"
    if _nested_too_deep(raw, env.content):
        return f"envelope content is nested deeper than {MAX_CONTENT_DEPTH} levels"
    return ""


def _is_timestamp(value: Any) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, (int, float))
        and math.isfinite(value) and 0 <= value <= _LATEST_TIMESTAMP
    )


def _is_error(error: Any) -> bool:
    """One ``e`` item as ``Envelope.failed`` writes it: what the admin and the dead letter read."""
    return (
        isinstance(error, dict)
        and isinstance(error.get("type", ""), str)
        and isinstance(error.get("message", ""), str)
        and (error.get("at") is None or _is_timestamp(error.get("at")))
        and (error.get("attempt") is None or _is_int_in(error.get("attempt"), 0, MAX_STORED_INT))
    )


def message_id_of(raw: str) -> str | None:
    """The message id in an envelope's JSON, or None if there is none to read (the worker
    dead-letters such an entry as malformed; a store need not know more)."""
    try:
        message_id = json.loads(raw).get("id")
    # Any bytes may sit in a stream: deeply nested JSON raises RecursionError,
    # and a cancel check must never take the worker down for garbage.
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
    return message_id if isinstance(message_id, str) else None
