"""``taskchan/stores/codec.py``: channels_redis's keys and rules, and nothing else gets through."""

from __future__ import annotations

import subprocess
import sys

import pytest
from channels_redis.serializers import JSONSerializer
from django.core.exceptions import ImproperlyConfigured

from taskchan.stores import codec as codec_module
from taskchan.stores.codec import PLAIN, Unreadable, codec_for
from tests.conftest import ROOT, subprocess_env

KEYS = ["first-key", "second-key"]


def channels_redis_crypter(keys):
    return JSONSerializer(symmetric_encryption_keys=keys).crypter


def test_the_same_keys_open_channels_redis_tokens_and_channels_redis_opens_ours():
    codec = codec_for(KEYS)
    theirs = channels_redis_crypter(KEYS).encrypt(b'{"v": 1}').decode()

    assert codec.unseal(theirs) == '{"v": 1}'
    assert channels_redis_crypter(KEYS).decrypt(codec.seal('{"v": 2}').encode()) == b'{"v": 2}'


def test_the_first_key_seals_and_every_key_unseals():
    token = codec_for(["new", "old"]).seal("text")

    assert codec_for(["new"]).unseal(token) == "text"
    assert codec_for(["old", "new"]).unseal(codec_for(["old"]).seal("text")) == "text"
    with pytest.raises(Unreadable):
        codec_for(["old"]).unseal(token)


def test_a_seal_never_expires():
    # channels_redis decrypts with a ttl of expiry + 10 s; taskchan's messages wait as long as they must.
    token = channels_redis_crypter(KEYS).encrypt_at_time(b"old", 0).decode()
    assert codec_for(KEYS).unseal(token) == "old"


def test_plain_json_stored_before_the_keys_is_read_as_it_is():
    assert codec_for(KEYS).unseal('{"v":1,"id":"x"}') == '{"v":1,"id":"x"}'


TOKEN = codec_for(KEYS).seal('{"v": 1}')
TAMPERED = TOKEN[:40] + ("A" if TOKEN[40] != "A" else "B") + TOKEN[41:]


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a token",
        "gAAAAA",
        "gAAAAA" + "A" * 200,
        TOKEN[:-4],
        TAMPERED,
        "\x00\xff\u2603",
        "[1, 2]",
        "null",
        codec_for(["another key"]).seal('{"v": 1}'),
    ],
    ids=["empty", "words", "header-only", "long-garbage", "truncated", "tampered",
         "binary", "json-array", "json-null", "foreign-key"],
)
def test_anything_else_is_unreadable_never_another_error(stored):
    with pytest.raises(Unreadable, match="cannot be decrypted with the layer's symmetric_encryption_keys"):
        codec_for(KEYS).unseal(stored)


def test_no_keys_is_the_identity():
    assert codec_for(None) is PLAIN and codec_for([]) is PLAIN
    assert PLAIN.seal("x") == "x" and PLAIN.unseal("gAAAAA") == "gAAAAA"


@pytest.mark.parametrize("keys", ["one-key", b"one-key", {"k": 1}, ["ok", ""], ["ok", 3]])
def test_a_bad_key_list_is_refused_with_what_to_write(keys):
    with pytest.raises(ImproperlyConfigured, match="symmetric_encryption_keys"):
        codec_for(keys)


def test_keys_without_cryptography_say_which_extra_to_install(monkeypatch):
    monkeypatch.setattr(codec_module, "_codecs", {})
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)  # import fails as if not installed
    with pytest.raises(ImproperlyConfigured, match=r"django-taskchan\[encryption\]"):
        codec_for(["a key"])


#: run in a fresh interpreter where ``cryptography`` cannot be imported, as if not installed
WITHOUT_CRYPTOGRAPHY = """
import sys

class NoCryptography:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError(f"No module named {name!r} (hidden by the test)")

sys.meta_path.insert(0, NoCryptography())
import django
django.setup()
import taskchan
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from taskchan.worker import Worker

taskchan.send("taskchan.t.record", {"n": 1})
async_to_sync(get_channel_layer().send)("plain.x", {"n": 1})
Worker(["taskchan.t.record"], burst=True).run()
assert "cryptography" not in sys.modules
try:
    from taskchan.stores.codec import codec_for
    codec_for(["a key"])
except ImproperlyConfigured as exc:
    print(exc)
"""


def test_without_cryptography_installed_everything_works_until_keys_are_set(redis_url, redis_client):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY], cwd=ROOT, env=subprocess_env(redis_url),
        capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "pip install 'django-taskchan[encryption]'" in done.stdout
    assert redis_client.llen("t:done") == 1
