"""Cluster message ids (``taskchan/stores/slot_tags.py``): each names its channel's hash slot.

A reader holding only the id must name the status record's key, in the slot
of the channel's keys; an id of any other shape must name no record and never
raise.  Other stores' ids and keys stay as they were.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskchan.cancels import check_message_id
from taskchan.envelope import Envelope, decode
from taskchan.progress.events import group_name
from taskchan.stores.keys import ClusterKeys, Keys
from taskchan.stores.slot_tags import TAGGED_ID, base36, slot_of, tag_of, tag_of_slot, tagged_id

slots = st.integers(0, 16_383)
channels = st.from_regex(r"taskchan\.[a-z0-9_.-]{1,40}", fullmatch=True)


def test_every_slot_has_a_tag_of_at_most_four_characters():
    tags = [tag_of_slot(slot) for slot in range(16_384)]
    assert all(re.fullmatch(r"[0-9a-z]{1,4}", tag) for tag in tags)
    assert [slot_of(tag) for tag in tags] == list(range(16_384))


@pytest.mark.parametrize("slot", [-1, 16_384, 10**9])
def test_no_tag_for_what_is_not_a_slot(slot):
    with pytest.raises(ValueError, match="no hash slot"):
        tag_of_slot(slot)


@given(st.integers(0, 36**4))
def test_base36_gives_each_number_its_own_string(n):
    assert int(base36(n), 36) == n


@given(slots)
def test_an_id_names_its_slot_and_passes_every_id_check(slot):
    message_id = tagged_id(slot)
    assert tag_of(message_id) == tag_of_slot(slot)
    assert slot_of(ClusterKeys("p").status(message_id)) == slot
    assert check_message_id(message_id) == message_id  # cancel(), the admin's lookup
    assert len(message_id) <= 64  # the envelope's limit and the models' columns
    assert group_name(message_id) == f"taskchan-progress-{message_id}"  # a progress group as it is
    envelope = Envelope.new("taskchan.x", {"n": 1}, message_id=message_id)
    assert decode(envelope.encode(), "taskchan.x").id == message_id


@given(channels)
def test_a_channels_id_names_the_slot_of_its_keys(channel):
    keys = ClusterKeys("taskchan")
    message_id = tagged_id(slot_of(keys.stream(channel)))
    assert (
        slot_of(keys.status(message_id))
        == slot_of(keys.stream(channel))
        == slot_of(keys.scheduled(channel))
    )
    assert keys.status(message_id) == f"taskchan:st:{{{tag_of(message_id)}}}:{message_id}"


@given(
    st.one_of(st.text(max_size=80), st.binary(max_size=40), st.integers(), st.none(), st.floats())
)
def test_anything_else_names_no_record_and_never_raises(value):
    if isinstance(value, str) and TAGGED_ID.fullmatch(value):
        return
    assert tag_of(value) is None
    if isinstance(value, str):
        assert ClusterKeys("p").status(value) is None


@given(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), st.text(max_size=8))
def test_an_untagged_or_badly_tagged_id_names_no_record(hex_id, suffix):
    message_id = f"{hex_id}-{suffix}"
    expected = suffix if re.fullmatch(r"[0-9a-z]{1,4}", suffix) else None
    assert tag_of(message_id) == expected
    assert tag_of(hex_id) is None  # every id made before: 32 hex digits alone


@given(st.text(min_size=1, max_size=100))
def test_the_other_stores_keys_are_as_before(message_id):
    assert Keys("p").status(message_id) == f"p:st:{message_id}"
