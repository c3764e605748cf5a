"""``--profile DIR``: sample the worker and the producer with py-spy during the end-to-end run.

py-spy (``pip install py-spy``; not a dependency of the project) attaches to
the running processes, samples only threads holding the GIL (``--gil``: the
Python work that competes for the CPU) without pausing them
(``--nonblocking``), and writes collapsed stacks.  Each process's stacks are
summarised into ``DIR/SYSTEM-ROLE.txt``: the functions with the most samples
on top of the stack (self) and anywhere on it (inclusive).  The raw stacks
stay beside it (``.raw``) for a flame graph (``flamegraph.pl``, speedscope).

A profiled run's figures include the sampler's cost; the table marks them.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

#: samples per second per process
RATE = 200
#: functions listed per table in a summary
TOP = 30
#: a producer's stacks count only inside its sending loop (not its imports or django.setup())
SEND_LOOPS = ("produce_sync", "produce_raw")
_LINE = re.compile(r":\d+\)$")


class Profiler:
    def __init__(self, procs, outdir: Path, py_spy: str) -> None:
        self.procs, self.outdir, self.py_spy = procs, outdir, py_spy
        outdir.mkdir(parents=True, exist_ok=True)

    def start(self, system: str, **pids: int) -> list[tuple]:
        """Start one py-spy per ``role=pid``; the handles for :meth:`stop`."""
        handles = []
        for role, pid in pids.items():
            raw = self.outdir / f"{system}-{role}.raw"
            cmd = [self.py_spy, "record", "--pid", str(pid), "--output", str(raw), "--format", "raw",
                   "--rate", str(RATE), "--gil", "--nonblocking", "--subprocesses", "--function"]  # fmt: skip
            log = (self.outdir / f"{system}-{role}.py-spy.log").open("ab")
            proc = self.procs.start(cmd, env=None, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            handles.append((role, proc, raw, SEND_LOOPS if role == "producer" else ()))
        return handles

    def stop(self, handles: list[tuple]) -> None:
        """Stop the samplers (SIGINT makes py-spy write its file) and summarise each."""
        for _role, proc, _raw, _within in handles:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _role, proc, raw, within in handles:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            self.procs.stop(proc, timeout=5)
            if raw.exists():
                raw.with_suffix(".txt").write_text(summarise(raw.read_text(), within))


def summarise(collapsed: str, within: tuple[str, ...] = ()) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks.

    With ``within``, only stacks passing through one of those functions count.
    """
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        if within and not any(frame.split(" (", 1)[0] in within for frame in frames):
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            anywhere[frame] += samples
    if not total:
        return "no samples\n"
    out = [
        f"{total} samples holding the GIL" + (f", inside {' / '.join(within)}" if within else "")
    ]
    ours = Counter({frame: n for frame, n in anywhere.items() if "(taskchan/" in frame})
    for title, counter in (
        ("self (top of the stack)", own),
        ("inclusive (anywhere on the stack)", anywhere),
        ("inclusive, taskchan's own functions", ours),
    ):
        out += ["", f"{title}:", "   %  samples  function (file)"]
        out += [f"{100 * n / total:5.1f} {n:8d}  {frame}" for frame, n in counter.most_common(TOP)]
    return "\n".join(out) + "\n"
