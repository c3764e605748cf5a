"""Test settings with a channels_redis layer that keeps messages 1 s and holds 1 per channel.

For worker subprocesses of ``test_w6_expiry.py``: ``DJANGO_SETTINGS_MODULE=
tests.failure_windows.settings_expiry``.  Without REDIS_URL it is the plain
test settings (in-memory layer).
"""

from tests.settings import *  # noqa: F403
from tests.settings import CHANNEL_LAYERS

if CHANNEL_LAYERS["default"]["BACKEND"] == "taskchan.layers.RedisChannelLayer":
    CHANNEL_LAYERS["default"]["CONFIG"].update(expiry=1, capacity=1)
