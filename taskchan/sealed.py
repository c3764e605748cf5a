"""Model fields whose values are sealed in the database with the channel layer's keys.

``SealedJSONField`` and ``SealedTextField`` are a JSONField and a TextField to
Python code.  In the database, while the layer has ``symmetric_encryption_keys``
(``stores/codec.py`` seals with them), a value is stored sealed - a JSON
value as ``{"$sealed": token}``, a text as ``"$sealed$" + token`` - unless
the field's ``sealed_unless`` names a TASKCHAN_ setting that is True.

Reading unseals whatever is sealed, whatever the settings say now, so turning
encryption or the setting on or off never breaks the rows already written.  A
value that does not unseal (its key left the list) is read as it is stored;
``is_sealed`` says so, and the admin refuses to re-send it.  A sealed value
cannot be filtered on: the same content seals differently every time.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from .conf import settings
from .stores.codec import PLAIN, Codec, Unreadable, layer_codec

SEALED_KEY = "$sealed"
SEALED_PREFIX = "$sealed$"


def _codec(sealed_unless: str | None) -> Codec:
    if sealed_unless and getattr(settings, sealed_unless):
        return PLAIN
    return layer_codec()


def is_sealed(value: Any) -> bool:
    """Whether a value read from a sealed field is still sealed (its key is not in the layer's list)."""
    if isinstance(value, str):
        return value.startswith(SEALED_PREFIX)
    return isinstance(value, dict) and len(value) == 1 and SEALED_KEY in value


def _unseal(token: str) -> str | None:
    """The text sealed in ``token``, or None if the layer's keys do not open it."""
    codec = layer_codec()
    if not codec.encrypted:
        return None
    try:
        return codec.unseal(token)
    except Unreadable:
        return None


class SealingField:
    """What both fields share: the ``sealed_unless`` option."""

    def __init__(self, *args, sealed_unless: str | None = None, **kwargs):
        self.sealed_unless = sealed_unless
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.sealed_unless:
            kwargs["sealed_unless"] = self.sealed_unless
        return name, path, args, kwargs


class SealedJSONField(SealingField, models.JSONField):
    def get_prep_value(self, value):
        codec = _codec(self.sealed_unless)
        if value is not None and codec.encrypted:
            value = {SEALED_KEY: codec.seal(json.dumps(value, cls=self.encoder))}
        return super().get_prep_value(value)

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        text = _unseal(value[SEALED_KEY]) if is_sealed(value) else None
        return value if text is None else json.loads(text, cls=self.decoder)


class SealedTextField(SealingField, models.TextField):
    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        codec = _codec(self.sealed_unless)
        if value and codec.encrypted:
            return SEALED_PREFIX + codec.seal(value)
        return value

    def from_db_value(self, value, expression, connection):
        text = _unseal(value[len(SEALED_PREFIX) :]) if is_sealed(value) else None
        return value if text is None else text
