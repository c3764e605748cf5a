"""Window 6: while the message waits in the channel longer than the layer's expiry.

How this design closes it: ``taskchan.*`` channels do not live in
channels_redis at all.  The taskchan layer (``taskchan.layers``) routes a send
to a ``taskchan.`` channel -- through ``taskchan.send`` or through the layer's
own ``send()`` -- to the reliable store: a Redis stream with no expiry and no
capacity.  channels_redis's ``expiry`` (messages older than it are dropped)
and ``capacity`` (``ChannelFull`` beyond it) apply only to the other channels
(websocket reply channels, groups), exactly as before.  A message therefore
waits as long as it has to, and a burst of sends is never refused.

How the test hits the moment: the layer is configured with channels_redis
``expiry=1, capacity=1`` in this process and in the worker subprocess
(``settings_expiry.py``).  50 messages are sent (half with ``taskchan.send``,
half with the layer's ``send()``) with no worker running: no ChannelFull.
After 3 s -- three times the expiry -- a burst worker runs all 50.  The
contrast test does the same through raw channels_redis on a plain channel:
the second send raises ChannelFull and the first is gone after the expiry,
``receive`` never gets it.  That is the hole taskchan closes.
"""

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from tests.conftest import done_records, layer_settings
from tests.failure_windows.helpers import wait_exit

CHANNEL = "taskchan.fw.record_tag"


@pytest.fixture
def short_lived_layer(redis_url, settings):
    """channels_redis expiry 1 s, capacity 1, in this test process."""
    settings.CHANNEL_LAYERS = layer_settings(redis_url, expiry=1, capacity=1)
    layer = get_channel_layer()
    assert (layer.expiry, layer.capacity) == (1, 1)
    return layer


def test_messages_outlive_the_layer_expiry_and_capacity(
    short_lived_layer, redis_client, manage, redis_url
):
    import taskchan

    tags = []
    for n in range(25):
        taskchan.send(CHANNEL, {"tag": f"send-{n}"})
        tags.append(f"send-{n}")
    for n in range(25):
        async_to_sync(short_lived_layer.send)(CHANNEL, {"tag": f"layer-{n}"})
        tags.append(f"layer-{n}")

    time.sleep(3)  # three times the layer's expiry, no worker running

    proc = manage(
        ["runworker", CHANNEL, "--burst", "--concurrency", "4"],
        redis_url=redis_url,
        DJANGO_SETTINGS_MODULE="tests.failure_windows.settings_expiry",
    )
    assert wait_exit(proc, 60) == 0, proc.output()

    done = done_records(redis_client)
    assert sorted(r[0] for r in done) == sorted(tags)
    assert all(r[1] == 1 for r in done)


async def test_contrast_raw_channels_redis_drops_and_refuses(short_lived_layer):
    layer = short_lived_layer
    channel = "fw.plain.jobs"

    # Control: the plain channel works when a consumer is there in time.
    await layer.send("fw.plain.control", {"type": "job", "n": 0})
    assert (await asyncio.wait_for(layer.receive("fw.plain.control"), timeout=2))["n"] == 0

    await layer.send(channel, {"type": "job", "n": 1})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "job", "n": 2})

    await asyncio.sleep(2.5)  # past the 1 s expiry, no consumer yet

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), timeout=2)
    await layer.flush()
