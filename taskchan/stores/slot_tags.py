"""Message ids that name their channel's hash slot, for status records on a Redis Cluster.

A status record is read by message id alone (``taskchan.status(id)``), yet on
a cluster send.lua writes it in the same step as the message, so it must sit
in the slot of the channel's keys (``{CH}``).  So a message sent to a cluster
gets an id that carries a hash tag of that slot: the usual 32 hex digits, a
``-``, then a tag of 1 to 4 characters of ``[0-9a-z]`` whose CRC16 falls in
the slot (``a3f...9c-k2q``).  Its record is ``P:st:{TAG}:ID`` (``keys.py``),
which a reader holding only the id can name.  An id of any other shape (sent
before, sent by another sender, garbage) names no record: it reads unknown.

The tag of a slot is the first string in the order ``0``, ``1``, ..., ``z``,
``10``, ... that hashes to it, found on first need and kept for the life of
the process: a first send to a channel costs some thousands of CRC16s (tens
of ms at worst); every slot's tag is known after 87,573 strings (about 0.3 s
in all), none longer than 4 characters.
"""

from __future__ import annotations

import re
import threading
import uuid

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
#: a cluster message id: 32 hex digits (uuid4), '-', the slot's tag.  Within
#: ``cancels.MESSAGE_ID`` and the envelope's 64 characters
TAGGED_ID = re.compile(r"[0-9a-f]{32}-([0-9a-z]{1,4})")

_tags: dict[int, str] = {}  # slot -> its tag, as found
_next = 0  # the position in the order above the search goes on from
_lock = threading.Lock()


def base36(n: int) -> str:
    """``n`` written in ``ALPHABET``: the ``n``-th string of the order above."""
    digits = ALPHABET[n % 36]
    while n >= 36:
        n //= 36
        digits = ALPHABET[n % 36] + digits
    return digits


def slot_of(key: str) -> int:
    """The hash slot of ``key``, as the cluster computes it (its hash tag, if any)."""
    return key_slot(key.encode())


def tag_of_slot(slot: int) -> str:
    """The tag of ``slot``: a short string whose hash slot is ``slot``."""
    global _next
    if not 0 <= slot < REDIS_CLUSTER_HASH_SLOTS:
        raise ValueError(f"no hash slot {slot!r}")
    tag = _tags.get(slot)
    if tag is not None:
        return tag
    with _lock:  # one search at a time; each goes on where the last stopped
        while slot not in _tags:
            candidate = base36(_next)
            _tags.setdefault(key_slot(candidate.encode()), candidate)
            _next += 1
        return _tags[slot]


def tagged_id(slot: int) -> str:
    """A fresh message id that names ``slot``."""
    return f"{uuid.uuid4().hex}-{tag_of_slot(slot)}"


def tag_of(message_id: object) -> str | None:
    """The tag in a cluster message id, or None for an id of any other shape (or not a str)."""
    if not isinstance(message_id, str):
        return None
    match = TAGGED_ID.fullmatch(message_id)
    return match.group(1) if match else None
