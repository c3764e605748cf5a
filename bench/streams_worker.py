"""The ceiling row's worker: bare Redis Streams, no queue library.

Run by the orchestrator as ``python -m bench.streams_worker``; stopped with
SIGTERM.  One process, one thread, one redis-py client: read up to
CEILING_BATCH entries with one ``XREADGROUP``, run the same no-op job on each
(``record_done``: its own ``INCR`` round trip, as in every other row), then
``XACK`` + ``XDEL`` the whole batch in one pipeline (taskchan deletes acked
entries too, so its stream holds only queued and leased messages).

What it leaves out is what a queue library adds: no envelope, no validation,
no lease renewal, no retries, no dead letters, no threads.  So its end-to-end
rate is what Redis and one Python producer can do on this machine, and each
other row is printed as a fraction of it.
"""

from __future__ import annotations

import json

from redis.exceptions import ResponseError

from bench.common import CEILING_BATCH, CEILING_GROUP, CEILING_STREAM, record_done, sync_client

#: this worker's consumer name in the group (there is only one)
CONSUMER = "ceiling"


def consume() -> None:
    client = sync_client()
    try:
        # From id 0: jobs sent before the worker started are read too.
        client.xgroup_create(CEILING_STREAM, CEILING_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    streams = {CEILING_STREAM: ">"}
    while True:
        reply = client.xreadgroup(CEILING_GROUP, CONSUMER, streams, count=CEILING_BATCH, block=1000)
        ids = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                record_done(json.loads(fields[b"m"]))
                ids.append(entry_id)
        if ids:
            pipe = client.pipeline(transaction=False)
            pipe.xack(CEILING_STREAM, CEILING_GROUP, *ids)
            pipe.xdel(CEILING_STREAM, *ids)
            pipe.execute()


if __name__ == "__main__":
    consume()
