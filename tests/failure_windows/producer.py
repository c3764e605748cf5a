"""A producer process for the failure-window tests: ``python -m tests.failure_windows.producer CHANNEL IDS_FILE``.

Sends ``{"n": i}`` to CHANNEL with ``taskchan.send`` in a tight loop, for ever,
and appends each id send() returned to IDS_FILE (one line, flushed and fsynced
before the next send), so the file lists exactly the messages send() accepted
even when this process is SIGKILLed.  A send that raises is written as an
``ERR`` line and the loop goes on.  Reads DJANGO_SETTINGS_MODULE and REDIS_URL.
"""

import os
import sys
import time

import django


def main(channel: str, ids_file: str) -> None:
    django.setup()
    import taskchan

    fd = os.open(ids_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    n = 0
    while True:
        n += 1
        try:
            message_id = taskchan.send(channel, {"n": n})
        except taskchan.StoreUnavailable as exc:
            line = f"ERR {n} {exc}".replace("\n", " ")
            time.sleep(0.02)
        else:
            line = message_id
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
