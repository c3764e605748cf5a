"""What the backend refuses, before anything is stored: retry options, queues, OPTIONS, arguments."""

from __future__ import annotations

import pytest
import tenacity
from django.tasks import task, task_backends
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
from hypothesis import given
from hypothesis import strategies as st

from taskchan.backend import TaskchanBackend
from taskchan.backend.task import check_retry_options
from taskchan.envelope import MAX_ATTEMPTS_LIMIT
from taskchan.exceptions import NotATaskchanLayer
from taskchan.stores.configured import get_store
from tests.conftest import on_store
from tests.tasks import jobs

pytestmark = pytest.mark.django_db


def module_level(x):
    return x


@given(st.integers(min_value=1, max_value=MAX_ATTEMPTS_LIMIT))
def test_max_attempts_within_bounds_is_taken(n):
    check_retry_options(n, None, "")


@given(
    st.one_of(
        st.integers(max_value=0), st.integers(min_value=MAX_ATTEMPTS_LIMIT + 1), st.booleans(),
        st.floats(allow_nan=True), st.text(), st.lists(st.integers(), max_size=2),
    )
)
def test_max_attempts_out_of_bounds_is_refused(value):
    with pytest.raises(InvalidTask, match="max_attempts must be a whole number from 1 to 10,000"):
        check_retry_options(value, None, "")


@given(st.one_of(st.integers(), st.text(), st.floats(allow_nan=True)))
def test_backoff_must_be_a_wait_strategy(value):
    with pytest.raises(InvalidTask, match="backoff must be a tenacity wait strategy"):
        check_retry_options(None, value, "")


@pytest.mark.parametrize("bad", [0, MAX_ATTEMPTS_LIMIT + 1, True, 2.5])
def test_a_task_declared_with_bad_retries_is_refused(bad):
    with pytest.raises(InvalidTask, match="max_attempts"):
        task(max_attempts=bad)(module_level)
    assert task(max_attempts=MAX_ATTEMPTS_LIMIT, backoff=tenacity.wait_fixed(1))(module_level).max_attempts


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"QUEUES": []}, "is empty"),
        ({"QUEUES": ["bad queue"]}, "a taskchan queue name"),
        ({"QUEUES": ["a..b"]}, "a taskchan queue name"),
        ({"QUEUES": ["x" * 85]}, "a taskchan queue name"),
        ({"QUEUES": ["ok"], "OPTIONS": {"MAX_RETRIES": 3}}, "unknown option"),
        ({"QUEUES": ["ok"], "OPTIONS": {"MAX_ATTEMPTS": 0}}, "max_attempts"),
        ({"QUEUES": ["ok"], "OPTIONS": {"BACKOFF": 3}}, "backoff"),
    ],
)
def test_backend_settings_are_checked(params, error):
    with pytest.raises(InvalidTaskBackend, match=error):
        TaskchanBackend("bad", {"BACKEND": "taskchan.backend.TaskchanBackend", **params})


def test_the_longest_queue_name_makes_a_channel():
    TaskchanBackend("long", {"QUEUES": ["x" * 84]})


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((object(),), {}), ((), {"when": object()}), (({1, 2},), {}), ((float("nan"),), {}), ((b"\xff",), {})],
)
def test_arguments_json_cannot_hold_are_refused_with_nothing_stored(use_redis_layer, redis_client, args, kwargs):
    with pytest.raises(InvalidTask):
        jobs.add.enqueue(*args, **kwargs)
    assert redis_client.xlen("taskchan:q:taskchan.tasks.t") == 0
    assert not on_store(get_store(), lambda: get_store().known_channels())


def test_unknown_queue_is_refused():
    with pytest.raises(InvalidTask, match="Queue 'elsewhere' is not valid"):
        jobs.add.using(queue_name="elsewhere")
    assert "default" in task_backends["default"].queues


@pytest.mark.parametrize("priority", [101, -101])
def test_priority_out_of_bounds_is_refused(priority):
    with pytest.raises(InvalidTask, match="priority"):
        jobs.add.using(priority=priority)


def test_a_layer_that_is_not_taskchans_is_not_the_tasks_fault(settings):
    """The task's id comes from the store: no taskchan layer raises that, not InvalidTask."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with pytest.raises(NotATaskchanLayer):
        jobs.add.enqueue(1, 2)
    with pytest.raises(InvalidTask):
        jobs.add.enqueue(object(), 2)
