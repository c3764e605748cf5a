"""Status notes (taskchan/stores/notes.py, taskchan/tracking.py): how notes of one message merge
before a write, and the start note whose field is built only when it is written."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from taskchan import tracking
from taskchan.stores.notes import StatusNote, merged_notes

HOUR_MS = 3_600_000


def test_a_message_with_one_note_passes_it_on_as_it_is():
    note = StatusNote("m1", {"done": "succeeded"}, HOUR_MS)
    assert merged_notes([None, note]) == [note]
    assert merged_notes([note])[0] is note  # no copy: this runs for every job


def test_notes_of_one_message_merge_into_a_new_note_and_leave_theirs_alone():
    start = tracking.start_note("m1", 1, json.dumps("w"), HOUR_MS)
    end = StatusNote("m1", {"done": "succeeded", "fin": "5"}, 2 * HOUR_MS)
    (merged,) = merged_notes([start, end])
    assert merged.fields == {**start.fields, "done": "succeeded", "fin": "5"}
    assert merged.ttl_ms == 2 * HOUR_MS
    assert end.fields == {"done": "succeeded", "fin": "5"} and end.ttl_ms == 2 * HOUR_MS
    assert merged is not start and merged is not end


def test_a_start_note_reads_back_as_the_attempts_start_in_ms():
    start = tracking.start_note("m1", 3, json.dumps("worker-1"), HOUR_MS)
    assert start.fields == {"a:3": f'[{start.at_ms},"worker-1"]'}
    end = tracking.end_note("m1", tracking.SUCCEEDED, HOUR_MS)
    found = tracking.read("m1", {"q": str(start.at_ms), **start.fields, **end.fields})
    assert found.state == tracking.SUCCEEDED and found.worker_ids == ["worker-1"]
    assert found.last_attempted_at == datetime.fromtimestamp(start.at_ms / 1000, tz=UTC)
    assert found.started_at <= found.finished_at
    assert abs(found.finished_at.timestamp() - start.at_ms / 1000) < 5


notes = st.builds(
    StatusNote,
    st.sampled_from(["a", "b", "c"]),
    st.dictionaries(st.sampled_from(["a:1", "a:2", "done", "fin", "p"]), st.text(max_size=5), max_size=3),
    st.integers(min_value=1, max_value=10 * HOUR_MS),
)


@given(st.lists(st.one_of(st.none(), notes), max_size=12))
def test_merging_is_applying_every_note_in_turn_and_changes_none(given_notes):
    before = copy.deepcopy(given_notes)
    expected: dict[str, tuple[dict, int]] = {}
    for note in filter(None, given_notes):
        fields, ttl_ms = expected.get(note.message_id, ({}, 0))
        expected[note.message_id] = ({**fields, **note.fields}, max(ttl_ms, note.ttl_ms))
    merged = merged_notes(given_notes)
    assert {n.message_id: (n.fields, n.ttl_ms) for n in merged} == expected
    assert len(merged) == len(expected)
    assert given_notes == before
