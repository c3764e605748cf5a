"""Test settings whose channel layer has ``symmetric_encryption_keys``.

For worker subprocesses of ``tests/integration/test_encryption.py``: the keys
are ``TASKCHAN_TEST_KEYS`` (comma-separated, the first encrypts), on the
layer ``tests.settings`` builds from ``REDIS_URL``.
"""

import copy
import os

from tests.settings import *  # noqa: F403
from tests.settings import CHANNEL_LAYERS

CHANNEL_LAYERS = copy.deepcopy(CHANNEL_LAYERS)
CHANNEL_LAYERS["default"]["CONFIG"]["symmetric_encryption_keys"] = os.environ["TASKCHAN_TEST_KEYS"].split(",")
