"""Test settings whose channel layer shards taskchan channels over several Redis servers.

For worker subprocesses of ``tests/integration/test_sharding.py``: the layer's
``hosts`` are ``TASKCHAN_SHARD_URLS`` (comma-separated).  Consumers still
record to ``REDIS_URL``.
"""

import os

from tests.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "taskchan.layers.RedisChannelLayer",
        "CONFIG": {"hosts": os.environ["TASKCHAN_SHARD_URLS"].split(",")},
    }
}
