"""``taskchan.progress_token()``: who may watch which messages, signed with the project's SECRET_KEY.

The view that sends a job hands its template a token naming the message(s);
``ProgressConsumer`` accepts only those.  Built on ``django.core.signing``
(salted, so a token signed for anything else is refused) with the expiry
inside the signed payload: ``max_age`` is the sender's choice per token.
"""

from __future__ import annotations

import math
import time

from django.core import signing

from ..exceptions import InvalidOption, TaskchanError

SALT = "taskchan.progress.token"
#: most messages one token may name
MAX_IDS = 100
#: longest message id a token may name
MAX_ID_LENGTH = 200
#: longest lifetime a token may have, in seconds (a week)
MAX_AGE_CAP = 7 * 24 * 3600


class BadToken(TaskchanError):
    """A progress token that is forged, damaged, signed for something else, or expired (``expired``)."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def progress_token(*message_ids: str, max_age: float = 3600) -> str:
    """A token that lets its bearer watch ``message_ids`` for ``max_age`` seconds (at most a week).

    Bad arguments raise ``taskchan.InvalidOption``.
    """
    if not message_ids or len(message_ids) > MAX_IDS:
        raise InvalidOption(f"progress_token() names 1 to {MAX_IDS} message ids, got {len(message_ids)}")
    for message_id in message_ids:
        if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_ID_LENGTH:
            raise InvalidOption(
                f"progress_token() takes message ids (strings of 1 to {MAX_ID_LENGTH} characters), got {message_id!r}"
            )
    if (
        not isinstance(max_age, (int, float)) or isinstance(max_age, bool)
        or not math.isfinite(max_age) or not 0 < max_age <= MAX_AGE_CAP
    ):
        raise InvalidOption(f"progress_token(max_age=) must be seconds, > 0 and at most {MAX_AGE_CAP}, got {max_age!r}")
    payload = {"ids": list(dict.fromkeys(message_ids)), "exp": round(time.time() + max_age, 3)}
    return signing.dumps(payload, salt=SALT, compress=True)


def read_token(token) -> list[str]:
    """The message ids ``token`` names; ``BadToken`` saying why when it is refused."""
    if not isinstance(token, str) or not token or len(token) > 20_000:
        raise BadToken("no progress token, or not a string")
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise BadToken("the progress token is not valid here (forged, damaged, or signed for something else)") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("ids"), list) or "exp" not in payload:
        raise BadToken("the progress token is not one taskchan made")
    if not isinstance(payload["exp"], (int, float)) or payload["exp"] < time.time():
        raise BadToken("the progress token has expired: load the page again", expired=True)
    return [str(message_id) for message_id in payload["ids"]]
