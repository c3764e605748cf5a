"""Encoding for storage: the one place that turns taskchan's text into what is stored, and back.

Everything taskchan stores that holds a message's content - stream entries,
delayed and retried messages, hand-backs, the relayed outbox envelopes, and
the database rows that say so (``taskchan/sealed.py``) - is written through
``Codec.seal`` and read through ``Codec.unseal``.  Without keys both are the
identity.  With the channel layer's ``symmetric_encryption_keys`` (CONFIG,
the list channels_redis reads for its own channels) the text is sealed as a
Fernet token, with channels_redis's rules:

- each key (str or bytes, any length) becomes a Fernet key as
  ``urlsafe_b64encode(sha256(key))``, so the same list gives the same keys;
- the first key seals; every key in the list unseals (MultiFernet), so a key
  is rotated by putting the new one first and dropping the old one once
  nothing sealed with it is left (a retry or hand-back re-seals with the
  first key; a delayed message keeps its seal until it runs);
- unlike channels_redis, a token has no time to live: taskchan's messages
  never expire, so neither do their seals.

A stored text that is a JSON object (``{...}``) is read as it is: it was
written before keys were set, and turning encryption on must not turn the
messages already queued into dead letters.  Anything else that does not
unseal raises ``Unreadable``; the worker dead-letters such an entry as
malformed and goes on.

``cryptography`` is imported only when keys are set (``pip install
django-taskchan[encryption]``), as channels_redis does.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from ..conf import settings
from ..exceptions import MissingExtra
from ..extras import missing_message

logger = logging.getLogger("taskchan.codec")


class Unreadable(ValueError):
    """A stored text could not be unsealed with the layer's keys."""


class Codec:
    """No keys: what is stored is the text itself."""

    encrypted = False

    def seal(self, text: str) -> str:
        return text

    def unseal(self, stored: str) -> str:
        return stored


class FernetCodec(Codec):
    """Sealed with the layer's ``symmetric_encryption_keys`` (see the module's docstring)."""

    encrypted = True

    def __init__(self, keys: list):
        try:
            from cryptography.fernet import Fernet, InvalidToken, MultiFernet
        except ImportError:
            # MissingExtra is an ImproperlyConfigured naming the extra to install.
            raise MissingExtra(
                "CHANNEL_LAYERS CONFIG sets 'symmetric_encryption_keys'. " + missing_message("encryption")
            ) from None
        self._invalid_token = InvalidToken
        self._fernet = MultiFernet([Fernet(fernet_key(key)) for key in keys])
        self._warned_plain = False

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def unseal(self, stored: str) -> str:
        if stored.startswith("{"):
            self._plain_seen()
            return stored
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except (self._invalid_token, ValueError):  # ValueError: not UTF-8 inside
            raise Unreadable(
                "cannot be decrypted with the layer's symmetric_encryption_keys: it was sealed "
                "with a key that is not in the list, or it is not something taskchan stored"
            ) from None

    def _plain_seen(self) -> None:
        # Once per process: a backlog of old messages must not flood the log.
        if not self._warned_plain:
            self._warned_plain = True
            logger.warning(
                "read an unencrypted message although symmetric_encryption_keys are set: it was "
                "stored before the keys were, or by a process that does not have them"
            )


def fernet_key(key: str | bytes) -> bytes:
    """channels_redis's derivation: the same key string gives the same Fernet key in both."""
    if isinstance(key, str):
        key = key.encode()
    return base64.urlsafe_b64encode(hashlib.sha256(key).digest())


PLAIN = Codec()
_codecs: dict[tuple, Codec] = {}


def codec_for(keys: Any) -> Codec:
    """The codec of one ``symmetric_encryption_keys`` value (None or empty: ``PLAIN``); one per list."""
    if not keys:
        return PLAIN
    if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)):
        raise ImproperlyConfigured(
            "CHANNEL_LAYERS CONFIG 'symmetric_encryption_keys' must be a list of keys (the first "
            f"encrypts, all decrypt), not {type(keys).__name__}."
        )
    if not all(isinstance(key, (str, bytes)) and key for key in keys):
        raise ImproperlyConfigured("CHANNEL_LAYERS CONFIG 'symmetric_encryption_keys' must hold non-empty str keys.")
    frozen = tuple(keys)
    codec = _codecs.get(frozen)
    if codec is None:
        codec = _codecs[frozen] = FernetCodec(list(keys))
    return codec


def layer_codec(alias: str | None = None) -> Codec:
    """The codec of the configured layer (TASKCHAN_LAYER), from its CONFIG."""
    layers = getattr(django_settings, "CHANNEL_LAYERS", None) or {}
    config = (layers.get(alias or settings.LAYER) or {}).get("CONFIG") or {}
    return codec_for(config.get("symmetric_encryption_keys"))
