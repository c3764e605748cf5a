"""Every process the benchmark starts, and how each one is stopped whatever happens.

Children run in their own session (a terminal's Ctrl-C reaches only the
bench, which then stops them in order) and are stopped by process group, which
also covers any processes a worker forks.  On Linux each child also gets
SIGTERM if the bench process itself dies.  The private redis-server is the
tests' own helper (``tests/servers.py``), started through :meth:`Processes.start`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from tests.servers import RedisServer

#: The repository root: every child runs from there (manage.py, ``-m bench.*``).
ROOT = Path(__file__).resolve().parent.parent
#: Seconds a worker gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 20.0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the bench process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no safety net
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """The children running now, so that each one is stopped on any exit."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, cmd: list[str], *, env: dict, stdout, stderr) -> subprocess.Popen:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.running.append(proc)
        return proc

    def reaped(self, proc: subprocess.Popen) -> None:
        """``proc`` exited and was waited for: nothing left to stop."""
        if proc in self.running:
            self.running.remove(proc)

    def stop(self, proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> dict:
        """SIGTERM the process group, wait, SIGKILL if it is still there."""
        started = time.monotonic()
        killed = False
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        self.reaped(proc)
        return {
            "returncode": proc.returncode,
            "stop_seconds": round(time.monotonic() - started, 3),
            "killed": killed,
        }

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            try:
                self.stop(proc, timeout=5)
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop pid {proc.pid}: {exc}", file=sys.stderr)

    @staticmethod
    def _signal_group(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # the group id is the child's pid (new session)
        except (ProcessLookupError, PermissionError):
            pass


def start_redis(procs: Processes, workdir: Path, binary: str, name: str = "redis") -> RedisServer:
    """A private redis-server (no RDB, no AOF) with its data and log in ``workdir``.

    Started as one of ``procs`` so that every exit path stops it; the Redis on
    6379 is never used.
    """

    def spawn(cmd: list[str]) -> subprocess.Popen:
        return procs.start(
            cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    data = workdir / name
    data.mkdir(exist_ok=True)
    return RedisServer(
        workdir=str(data), logfile=str(workdir / f"{name}.log"), binary=binary, spawn=spawn
    )


def _family(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    family, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in family:
            family.append(p)
            todo.extend(children.get(p, []))
    return family


def worker_rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` plus all its descendants, in MiB."""
    total_kb = 0
    for p in _family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1) if total_kb else None


#: clock ticks per second of /proc/PID/stat's utime and stime
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants."""
    total = 0
    for p in _family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def run_queue_wait(pid: int) -> float:
    """Seconds ``pid``'s threads and its descendants' spent runnable but waiting for a CPU so far.

    The second field of each thread's ``/proc/PID/task/TID/schedstat``: on a
    shared machine, the part of a process's wall time that is neither its own
    work nor waiting for I/O.
    """
    total = 0
    for p in _family(pid):
        for stat in Path(f"/proc/{p}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, lines))
    except OSError:
        return ""
