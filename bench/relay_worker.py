"""The relay row's worker: ``runworker taskchan.bench-relay`` and a Celery worker, together.

Run by the orchestrator as ``python -m bench.relay_worker``.  Both children share this
process's group, so the bench's SIGTERM to the group reaches them; this process
waits for both, and stops the other if one exits.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from bench.common import RELAY_CHANNEL


def main(celery_cmd: list[str]) -> int:
    children = [
        subprocess.Popen(
            [sys.executable, "manage.py", "runworker", RELAY_CHANNEL, "--concurrency", "4"]
        ),
        subprocess.Popen(celery_cmd),
    ]

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        for child in children:
            try:
                code = child.wait(0.2)
            except subprocess.TimeoutExpired:
                continue
            forward(signal.SIGTERM, None)
            for other in children:
                other.wait()
            return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
