"""Settings and checks of the Redis Cluster store and of durable sends, and the cluster key layout.

- TASKCHAN_SEND_REPLICAS (0 to 100) and TASKCHAN_SEND_REPLICAS_TIMEOUT (above
  0, at most 60 s): values at and past every bound, and arbitrary values
  (hypothesis): accepted exactly inside the bounds, else ImproperlyConfigured
  naming the setting, and ``manage.py check`` reports E004.
- CONFIG's ``taskchan_cluster`` beside sharding options is E008; a replica
  count above what a master has is E030 (the check connects); on the
  in-memory layer W031.
- ``ClusterKeys``: every key naming a channel hashes to the channel's slot,
  whatever the channel and the idempotency key (hypothesis).
"""

from __future__ import annotations

import math

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import example, given
from hypothesis import strategies as st
from redis.crc import key_slot

from taskchan.conf import settings as taskchan_settings
from taskchan.stores.keys import ClusterKeys
from tests.conftest import layer_settings


def taskchan_ids() -> list[str]:
    return sorted(m.id for m in run_checks(databases=[]) if str(m.id).startswith("taskchan."))


def read(name: str, value):
    with override_settings(**{f"TASKCHAN_{name}": value}):
        return getattr(taskchan_settings, name)


# -- bounds --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 2, 100])
def test_send_replicas_at_its_bounds_is_read(value):
    assert read("SEND_REPLICAS", value) == value


@pytest.mark.parametrize("value", [-1, 101, 10**9, 1.0, "1", True, None])
def test_send_replicas_past_its_bounds_or_of_another_type_is_refused(value):
    with pytest.raises(ImproperlyConfigured, match="TASKCHAN_SEND_REPLICAS must be"):
        read("SEND_REPLICAS", value)


@pytest.mark.parametrize("value", [0.001, 0.2, 1, 60, 60.0])
def test_send_replicas_timeout_at_its_bounds_is_read(value):
    assert read("SEND_REPLICAS_TIMEOUT", value) == value


@pytest.mark.parametrize("value", [0, 0.0, 0.0009, -1, 60.001, math.inf, math.nan, "1", False])
def test_send_replicas_timeout_past_its_bounds_is_refused(value):
    with pytest.raises(ImproperlyConfigured, match="TASKCHAN_SEND_REPLICAS_TIMEOUT must be"):
        read("SEND_REPLICAS_TIMEOUT", value)


@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3), st.none()))
@example(0)
@example(100)
@example(101)
def test_any_send_replicas_is_read_exactly_inside_its_bounds(value):
    inside = type(value) is int and 0 <= value <= 100
    try:
        assert read("SEND_REPLICAS", value) == value and inside
    except ImproperlyConfigured as exc:
        assert not inside and "TASKCHAN_SEND_REPLICAS" in str(exc)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=3)))
@example(0.001)
@example(60.0)
@example(60.0000001)
def test_any_timeout_is_read_exactly_inside_its_bounds(value):
    inside = type(value) in (int, float) and 0.001 <= value <= 60
    try:
        assert read("SEND_REPLICAS_TIMEOUT", value) == value and inside
    except ImproperlyConfigured as exc:
        assert not inside and "TASKCHAN_SEND_REPLICAS_TIMEOUT" in str(exc)


def test_a_bad_replica_setting_is_a_check_error():
    with override_settings(TASKCHAN_SEND_REPLICAS=-1):
        assert taskchan_ids() == ["taskchan.E004"]


# -- checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("clash", ["taskchan_hosts", "taskchan_host", "taskchan_drain_hosts"])
def test_a_cluster_beside_sharding_options_is_an_error(clash):
    value = "redis://b:6379/0" if clash == "taskchan_host" else ["redis://b:6379/0", "redis://c:6379/0"]
    layers = layer_settings("redis://a:6379/0", taskchan_cluster="redis://node:7000", **{clash: value})
    with override_settings(CHANNEL_LAYERS=layers):
        messages = [m for m in run_checks(databases=[]) if m.id == "taskchan.E008"]
    assert len(messages) == 1 and "taskchan_cluster" in messages[0].msg and clash in messages[0].msg


@pytest.mark.parametrize("value", ["node:7000", "", [], ["redis://a:7000", 7], {"url": "redis://a"}])
def test_a_cluster_that_is_no_url_is_an_error(value):
    with override_settings(CHANNEL_LAYERS=layer_settings("redis://a:6379/0", taskchan_cluster=value)):
        assert taskchan_ids() == ["taskchan.E008"]


def test_more_replicas_than_a_master_has_is_an_error(cluster, redis_url):
    layers = layer_settings(redis_url, taskchan_cluster=cluster.url)
    with override_settings(CHANNEL_LAYERS=layers, TASKCHAN_SEND_REPLICAS=2):
        messages = [m for m in run_checks(databases=[]) if str(m.id).startswith("taskchan.")]
    assert sorted(m.id for m in messages) == ["taskchan.E030"] * 3  # each of the three masters
    assert "has 1 connected replica" in messages[0].msg
    with override_settings(CHANNEL_LAYERS=layers, TASKCHAN_SEND_REPLICAS=1):
        assert taskchan_ids() == []


def test_a_plain_redis_without_replicas_is_an_error_when_sends_wait(redis_url):
    with override_settings(CHANNEL_LAYERS=layer_settings(redis_url), TASKCHAN_SEND_REPLICAS=1):
        assert taskchan_ids() == ["taskchan.E030"]


def test_an_unreachable_redis_is_left_to_the_worker_and_the_sends(settings):
    with override_settings(CHANNEL_LAYERS=layer_settings("redis://127.0.0.1:1/0"), TASKCHAN_SEND_REPLICAS=1):
        assert taskchan_ids() == []


def test_replicas_on_the_memory_layer_are_a_warning():
    memory = {"default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=memory, TASKCHAN_SEND_REPLICAS=1):
        assert taskchan_ids() == ["taskchan.W031"]


# -- the cluster key layout -----------------------------------------------------------

channel_names = st.from_regex(r"\Ataskchan\.[a-zA-Z0-9\-_.]{1,40}\Z")


@given(channel_names, st.text(min_size=1, max_size=50), st.text(max_size=10), st.integers(0, 2**40))
def test_every_key_of_a_channel_hashes_to_the_channels_slot(channel, key, message_id, bucket):
    keys = ClusterKeys("taskchan")
    slot = key_slot(keys.stream(channel).encode())
    for name in (keys.scheduled(channel), keys.idempotency(channel, key), keys.channel_set(channel),
                 keys.counter(channel, "processed", bucket), keys.celery_starts(message_id, bucket, channel),
                 keys.levels(channel), keys.lane(channel, 100), keys.lane(channel, -100)):
        assert key_slot(name.encode()) == slot, name
    assert keys.channel_of_stream(keys.stream(channel)) == channel
    # The worker registry is one slot of its own, whatever the worker's id.
    assert key_slot(keys.worker(message_id).encode()) == key_slot(keys.workers.encode())
