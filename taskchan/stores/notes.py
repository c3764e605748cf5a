"""Status notes: updates of a message's status record that ride in a step taken anyway.

The worker's batched ack, a retry's reschedule and a dead letter's ack carry
them (``taskchan/tracking.py`` builds them; ``redis_status.py`` and the memory
store write them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class StatusNote:
    """Fields to merge into message ``message_id``'s status record (``P:st:ID``), which then
    lives ``ttl_ms`` more.  What the fields mean is ``taskchan/tracking.py``'s business: a store
    only merges them (HSET) and sets the lifetime, in the step it is given them with."""

    message_id: str
    fields: dict[str, str]
    ttl_ms: int
    #: set when a later note of the same message holds these fields too (a success's note
    #: carries its attempt's start): one not yet written then need not be (the acker skips it)
    carried: bool = False


class Note(Protocol):
    """What the acker and the stores read of a note: a ``StatusNote``, or a
    ``tracking.StartNote`` (an attempt's start, its field built only if written)."""

    message_id: str
    ttl_ms: int
    carried: bool

    @property
    def fields(self) -> Mapping[str, str]: ...  # read only: a StartNote builds it anew each time


def merged_notes(notes) -> list[Note]:
    """``notes`` with those of one message merged (a start and a success acked together: one write).

    A message's only note is passed on as it is (most are: this runs for every
    job); merging makes a new note, so no note given is ever changed.
    """
    by_id: dict[str, Note] = {}
    for note in notes:
        if note is None:
            continue
        seen = by_id.get(note.message_id)
        by_id[note.message_id] = note if seen is None else StatusNote(
            note.message_id, {**seen.fields, **note.fields}, max(seen.ttl_ms, note.ttl_ms)
        )
    return list(by_id.values())
