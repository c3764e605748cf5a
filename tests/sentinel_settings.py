"""Test settings whose channel layer finds its Redis through a Sentinel.

For worker subprocesses of ``tests/integration/test_sentinel.py``: the layer's
one ``hosts`` entry is channels_redis's Sentinel form, built from
``SENTINEL_PORT`` (the sentinel on 127.0.0.1) and ``SENTINEL_MASTER`` (the
monitored master's name).  Consumers still record to ``REDIS_URL``.
"""

import os

from tests.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "taskchan.layers.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "sentinels": [("127.0.0.1", int(os.environ["SENTINEL_PORT"]))],
                    "master_name": os.environ.get("SENTINEL_MASTER", "mymaster"),
                }
            ]
        },
    }
}
