"""Django settings for the benchmark's "encrypted" row: taskchan with symmetric_encryption_keys.

The same layer as ``bench/settings.py`` with one key, so every stream entry is
sealed and unsealed (``taskchan/stores/codec.py``); the row's ratio to plain
taskchan is what encryption at rest costs.
"""

import copy

from bench.settings import *  # noqa: F403
from bench.settings import CHANNEL_LAYERS

CHANNEL_LAYERS = copy.deepcopy(CHANNEL_LAYERS)
CHANNEL_LAYERS["default"]["CONFIG"]["symmetric_encryption_keys"] = ["bench-key-not-a-secret"]
