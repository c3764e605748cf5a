#!/usr/bin/env python
"""Benchmark taskchan against raw channels_redis and Celery on the same Redis.

One run starts its own redis-server on a free port (no persistence, in a temp
dir; the Redis on 6379 is never touched), then for each system:

1. send-only: a producer process sends N jobs with no worker running
   (send() calls per second), then Redis is flushed;
2. end-to-end: the worker is started and warmed up, a producer sends N jobs
   as fast as it can, and jobs/s is N / (last job done - first send);
3. latency: a producer sends at a paced rate (1,000 jobs/s for 3 s by
   default), each job records time.time() - content["sent_at"]; p50/p99;
4. the worker's resident memory (VmRSS of it and its children) is sampled,
   the worker is stopped with SIGTERM and Redis is flushed.

Every job runs the same no-op (bench/common.py: one INCR), so the difference
between the rows is what each system costs per job. Usage:

    python bench/bench.py [--jobs N] [--quick] [--only raw,celery,taskchan,handoff,relay] [--encrypted] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script (python bench/bench.py), sys.path[0] is bench/ itself, where
# this very file would shadow the `bench` package: put the repo root there.
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path[0] = str(ROOT)

import redis  # noqa: E402

from bench.common import (  # noqa: E402
    CELERY_QUEUE,
    DONE_KEY,
    LAST_DONE_KEY,
    LATENCY_KEY,
    PHASE_KEYS,
    RAW_CHANNEL,
    REDIS_URL_ENV,
    RELAY_CHANNEL,
    SHARD_URLS_ENV,
    SPREAD_CHANNELS,
    TASKCHAN_CHANNEL,
)

#: "handoff": a taskchan channel with handoff="celery" (send() publishes to
#: Celery, a Celery worker runs it); "relay": the design not chosen, a taskchan
#: worker relaying each message to Celery (opt-in: --only ...,relay).
#: "encrypted": taskchan with the layer's symmetric_encryption_keys (--encrypted).
SYSTEMS = ("raw", "celery", "taskchan", "handoff", "relay", "multi", "sharded", "encrypted")
DEFAULT_SYSTEMS = ("raw", "celery", "taskchan", "handoff")
LABELS = {
    "raw": "raw channels_redis",
    "celery": "Celery",
    "taskchan": "taskchan",
    "handoff": "taskchan→celery",
    "relay": "taskchan→worker→celery",
    "multi": "taskchan, 4 channels",
    "sharded": "taskchan, 4 channels, 2 Redis",
    "encrypted": "taskchan, encrypted",
}
#: Systems whose processes run under Django (and need its throw-away database).
DJANGO_SYSTEMS = ("taskchan", "handoff", "relay", "multi", "sharded", "encrypted")
#: Where each system holds queued jobs (Redis command, key), to check that a
#: send-only run stored every job it sent. Default prefixes: channels_redis
#: "asgi", taskchan "taskchan" (taskchan/stores/keys.py), kombu the queue name.
QUEUED = {
    "raw": ("zcard", "asgi" + RAW_CHANNEL),
    "celery": ("llen", CELERY_QUEUE),
    "taskchan": ("xlen", "taskchan:q:" + TASKCHAN_CHANNEL),
    "encrypted": ("xlen", "taskchan:q:" + TASKCHAN_CHANNEL),
    "handoff": ("llen", CELERY_QUEUE),
    "relay": ("xlen", "taskchan:q:" + RELAY_CHANNEL),
    **{system: ("xlen", *("taskchan:q:" + c for c in SPREAD_CHANNELS)) for system in ("multi", "sharded")},
}
#: Jobs sent (and waited for) after a worker starts and before it is timed.
WARMUP_JOBS = 20
#: Seconds a worker may take to start and finish the warm-up jobs.
WARMUP_TIMEOUT = 90.0
#: Seconds a worker gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 20.0
#: Seconds redis-server gets to answer PING after it is started.
REDIS_START_TIMEOUT = 10.0


class PhaseError(Exception):
    """A measurement failed or ran out of time; the system's row says why."""


# ---------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the bench process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no safety net
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Every child process the bench starts, so each one is stopped whatever happens.

    Children run in their own session (a terminal's Ctrl-C reaches only the
    bench, which then stops them in order) and are stopped by process group,
    which also covers any processes a worker forks.
    """

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
        if proc in self.running:
            self.running.remove(proc)
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


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port


class RedisServer:
    """A private redis-server: free port, no RDB, no AOF, data dir in the temp dir."""

    def __init__(self, procs: Processes, workdir: Path, binary: str, name: str = "redis") -> None:
        self.procs, self.workdir, self.binary, self.name = procs, workdir, binary, name
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        for _ in range(3):  # the port may be taken between free_port() and bind
            port = free_port()
            log = self.workdir / f"{self.name}.log"
            cmd = [
                self.binary, "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--daemonize", "no", "--logfile", str(log),
            ]  # fmt: skip
            self.proc = self.procs.start(
                cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(self.url)
            deadline = time.monotonic() + REDIS_START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
            self.procs.stop(self.proc, timeout=2)
        raise RuntimeError(f"redis-server did not start; see its log: {log}")

    def version(self) -> str:
        return redis.Redis.from_url(self.url).info("server").get("redis_version", "?")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc, timeout=5)


def worker_rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` plus all its descendants, in MiB (Linux /proc)."""
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
    total_kb, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1) if total_kb else None


def tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, lines))
    except OSError:
        return ""


# ------------------------------------------------------------------ systems


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        procs: Processes,
        server: RedisServer,
        workdir: Path,
        second: RedisServer | None = None,
    ):
        self.args, self.procs, self.server, self.workdir = args, procs, server, workdir
        self.r = redis.Redis.from_url(server.url)
        # The "sharded" row's second Redis (its store only; the bench's counters stay on the first).
        self.r2 = redis.Redis.from_url(second.url) if second else None
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        base = {
            k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "REDIS_URL")
        }
        base.update(PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", **{REDIS_URL_ENV: server.url})
        # Only taskchan runs under Django: with DJANGO_SETTINGS_MODULE set, Celery's
        # Django fix-up would set Django up in the Celery worker too.
        self.envs = {
            "raw": base,
            "celery": base,
            "taskchan": dict(
                base,
                DJANGO_SETTINGS_MODULE="bench.settings",
                REDIS_URL=server.url,
                BENCH_SQLITE_PATH=str(workdir / "db.sqlite3"),
            ),
        }
        # The hand-off rows: taskchan's settings plus the hand-off consumers;
        # their Celery worker is the project's app under Django.
        self.envs["handoff"] = self.envs["relay"] = dict(
            self.envs["taskchan"], DJANGO_SETTINGS_MODULE="bench.settings_handoff"
        )
        self.envs["multi"] = self.envs["taskchan"]
        self.envs["encrypted"] = dict(self.envs["taskchan"], DJANGO_SETTINGS_MODULE="bench.settings_encrypted")
        if second:
            self.envs["sharded"] = dict(
                self.envs["taskchan"],
                DJANGO_SETTINGS_MODULE="bench.settings_sharded",
                **{SHARD_URLS_ENV: f"{server.url},{second.url}"},
            )

    def worker_cmd(self, system: str) -> list[str]:
        py = sys.executable
        if system == "raw":
            return [py, "-m", "bench.raw_worker"]
        # The same Celery worker configuration for the Celery and hand-off rows;
        # only the app differs (bench's plain one, or the project's under Django).
        celery = [
            py, "-m", "celery", "-A", "bench.celery_app" if system == "celery" else "project", "worker",
            "--pool", "threads", "--concurrency", "4",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-Q", CELERY_QUEUE, "--loglevel", "WARNING",
        ]  # fmt: skip
        if system in ("celery", "handoff"):
            return celery
        if system == "relay":
            return [py, "-m", "bench.relay_worker", *celery]
        channels = "taskchan.bench-sh.*" if system in ("multi", "sharded") else "taskchan.bench"
        return [py, "manage.py", "runworker", channels, "--concurrency", "4"]

    # -- steps

    def log(self, msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    def flush(self) -> None:
        for client in filter(None, (self.r, self.r2)):
            client.flushall()

    def reset_phase(self) -> None:
        self.r.delete(*PHASE_KEYS)

    def produce(
        self,
        system: str,
        count: int,
        target: int,
        timeout: float,
        rate: float = 0,
        latency: bool = False,
    ) -> dict:
        cmd = [sys.executable, "-m", "bench.produce", system]
        cmd += ["--count", str(count), "--target", str(target)]
        if rate:
            cmd += ["--rate", str(rate)]
        if latency:
            cmd.append("--latency")
        errlog = self.workdir / f"{system}-producer.log"
        with errlog.open("ab") as err:
            proc = self.procs.start(cmd, env=self.envs[system], stdout=subprocess.PIPE, stderr=err)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.procs.stop(proc, timeout=2)
                raise PhaseError(
                    f"producer did not finish {count} sends in {timeout:.0f} s"
                ) from None
            self.procs.running.remove(proc)  # exited and reaped
        if proc.returncode != 0:
            raise PhaseError(f"producer exited with {proc.returncode}:\n{tail(errlog, 15)}")
        return json.loads(out.decode().strip().splitlines()[-1])

    def wait_done(self, target: int, deadline: float, worker: subprocess.Popen, what: str) -> float:
        """Wait for the job that brings the counter to ``target``; return its done time."""
        while True:
            value = self.r.get(LAST_DONE_KEY)
            if value is not None:
                return float(value)
            if worker.poll() is not None:
                raise PhaseError(f"{what}: worker exited with {worker.returncode}")
            if time.monotonic() > deadline:
                done = int(self.r.get(DONE_KEY) or 0)
                raise PhaseError(f"{what}: timed out with {done}/{target} jobs done")
            time.sleep(0.02)

    def migrate(self, res: dict) -> None:
        """Create taskchan's tables in the bench's throw-away SQLite (dead letters go there).

        Only a failing job touches the database, so a failed migrate is a
        warning, not a reason to skip the measurements.
        """
        cmd = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        errlog = self.workdir / "migrate.log"
        with errlog.open("ab") as err:
            proc = self.procs.start(
                cmd, env=self.envs["taskchan"], stdout=err, stderr=subprocess.STDOUT
            )
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                self.procs.stop(proc, timeout=2)
                res.setdefault("warnings", []).append("manage.py migrate did not finish in 120 s")
                return
            self.procs.running.remove(proc)
        if proc.returncode != 0:
            res.setdefault("warnings", []).append(
                f"manage.py migrate exited with {proc.returncode}"
            )
            print(f"  warning: manage.py migrate failed:\n{tail(errlog, 15)}", file=sys.stderr)

    def run(self, system: str, res: dict) -> None:
        """Measure one system into ``res``; what was measured before a failure stays there."""
        n, a = self.args.jobs, self.args
        if system in DJANGO_SYSTEMS:
            self.migrate(res)
        self.flush()

        # 1. send() alone: nothing consumes, so this is the producer's cost only.
        sent = self.produce(system, n, n, timeout=a.timeout)
        command, *keys = QUEUED[system]
        servers = (self.r, self.r2) if system == "sharded" else (self.r,)
        stored = sum(client.execute_command(command.upper(), key) for client in servers for key in keys)
        res["send_only"] = {
            "jobs": n,
            "seconds": sent["t_last"] - sent["t_first"],
            "send_per_s": sent["send_per_s"],
            "stored": stored,
        }
        self.log(f"send-only: {sent['send_per_s']:,.0f} send()/s, {stored} jobs stored")
        if system == "sharded":
            res["send_only"]["stored_per_host"] = [
                sum(client.xlen("taskchan:q:" + c) for c in SPREAD_CHANNELS) for client in servers
            ]
        self.flush()

        worker_log = self.workdir / f"{system}-worker.log"
        with worker_log.open("ab") as log:
            worker = self.procs.start(
                self.worker_cmd(system), env=self.envs[system], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            try:
                # Warm-up: the worker is up, connected and has run jobs before timing.
                self.produce(system, WARMUP_JOBS, WARMUP_JOBS, timeout=WARMUP_TIMEOUT)
                self.wait_done(WARMUP_JOBS, time.monotonic() + WARMUP_TIMEOUT, worker, "warm-up")
                self.reset_phase()

                # 2. End to end: first send() to last job done.
                deadline = time.monotonic() + a.timeout
                sent = self.produce(system, n, n, timeout=a.timeout)
                last_done = self.wait_done(n, deadline, worker, "end-to-end")
                seconds = last_done - sent["t_first"]
                res["end_to_end"] = {
                    "jobs": n,
                    "done_count": int(self.r.get(DONE_KEY) or 0),  # > jobs: duplicates
                    "seconds": seconds,
                    "jobs_per_s": n / seconds,
                    "producer_send_per_s": sent["send_per_s"],
                }
                self.log(f"end-to-end: {n / seconds:,.0f} jobs/s ({n} jobs in {seconds:.2f} s)")
                self.reset_phase()

                # 3. Latency at a paced rate: send() start to job start.
                count = int(a.latency_rate * a.latency_seconds)
                deadline = time.monotonic() + a.latency_seconds + a.timeout
                sent = self.produce(
                    system,
                    count,
                    count,
                    timeout=a.latency_seconds + a.timeout,
                    rate=a.latency_rate,
                    latency=True,
                )
                self.wait_done(count, deadline, worker, "latency")
                lat = sorted(float(x) for x in self.r.lrange(LATENCY_KEY, 0, -1))
                res["latency"] = {
                    "rate_target": a.latency_rate,
                    "rate_achieved": sent["send_per_s"],
                    "jobs": len(lat),
                    "p50_ms": percentile(lat, 50) * 1000,
                    "p99_ms": percentile(lat, 99) * 1000,
                    "max_ms": lat[-1] * 1000,
                }
                self.log(
                    f"latency at {sent['send_per_s']:,.0f}/s: p50 {res['latency']['p50_ms']:.2f} ms,"
                    f" p99 {res['latency']['p99_ms']:.2f} ms"
                )

                # 4. Memory at the end of the run.
                res["worker_rss_mb"] = worker_rss_mb(worker.pid)
            except PhaseError:
                print(
                    f"--- last lines of the {system} worker's output:\n{tail(worker_log)}",
                    file=sys.stderr,
                )
                raise
        finally:
            res["worker_stop"] = self.procs.stop(worker)
            self.flush()


def merge_rounds(rounds: list[dict]) -> dict:
    """One result from several rounds: the median of every number, any() of every flag.

    Each metric's median is taken over the rounds that measured it; errors and
    warnings of every round are kept.
    """
    merged: dict = {}
    for key in dict.fromkeys(k for r in rounds for k in r):
        values = [r[key] for r in rounds if key in r]
        if key in ("error", "warnings"):
            flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
            merged["warnings" if key == "warnings" else "error"] = (
                list(dict.fromkeys(flat)) if key == "warnings" else "; ".join(dict.fromkeys(flat))
            )
        elif all(isinstance(v, dict) for v in values):
            merged[key] = merge_rounds(values)
        elif all(isinstance(v, bool) for v in values):
            merged[key] = any(values)
        elif all(isinstance(v, int | float) for v in values):
            merged[key] = statistics.median(values)
        else:
            merged[key] = values[0]
    return merged


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil
    return sorted_values[int(rank) - 1]


# ------------------------------------------------------------------- report


def fmt(value, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def get(res: dict, *path):
    for key in path:
        if not isinstance(res, dict) or key not in res:
            return None
        res = res[key]
    return res


def ratio(results: dict, a: str, b: str, *path) -> float | None:
    x, y = get(results.get(a, {}), *path), get(results.get(b, {}), *path)
    return x / y if x and y else None


def report(results: dict, params: dict) -> str:
    header = ["system", "jobs/s end-to-end", "send/s", "p50 ms", "p99 ms", "worker RSS MB"]
    rows = []
    for res in results.values():
        rows.append([
            res["label"],
            fmt(get(res, "end_to_end", "jobs_per_s")),
            fmt(get(res, "send_only", "send_per_s")),
            fmt(get(res, "latency", "p50_ms"), ".2f"),
            fmt(get(res, "latency", "p99_ms"), ".2f"),
            fmt(res.get("worker_rss_mb"), ".1f"),
        ])  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        return " | ".join(
            [first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
        )

    out = [
        f"{params['jobs']} jobs end-to-end and send-only; latency at {params['latency_rate']:g} jobs/s"
        f" for {params['latency_seconds']:g} s; redis-server {params['redis_version']}, {params['cpus']} CPUs"
        + (f"; median of {params['repeat']} rounds" if params["repeat"] > 1 else ""),
        "",
        line(header),
        "-+-".join("-" * w for w in widths),
        *(line(r) for r in rows),
        "",
    ]
    if params["loadavg_start"] > 0.5:
        out.append(
            f"note: the 1-minute load average was {params['loadavg_start']:.2f} when the run started (other work"
            " on the machine, or a run just before): absolute numbers are noisy"
        )
    for res in results.values():
        if "error" in res:
            out.append(f"{res['label']}: FAILED: {res['error'].splitlines()[0]}")
        out.extend(f"{res['label']}: warning: {w}" for w in res.get("warnings", []))
        if get(res, "worker_stop", "killed"):
            out.append(
                f"{res['label']}: the worker did not exit within {STOP_TIMEOUT:g} s of SIGTERM"
            )
        stored = get(res, "send_only", "stored")
        if stored is not None and stored != res["send_only"]["jobs"]:
            out.append(
                f"{res['label']}: send-only sent {res['send_only']['jobs']} jobs but {stored} were queued"
            )
        achieved = get(res, "latency", "rate_achieved")
        if achieved and achieved < 0.95 * params["latency_rate"]:
            out.append(
                f"{res['label']}: the producer reached only {achieved:,.0f} jobs/s in the latency run"
            )
        e2e = get(res, "end_to_end", "jobs_per_s")
        if e2e and achieved and achieved > 0.8 * e2e:
            out.append(
                f"{res['label']}: the latency run's {achieved:,.0f} jobs/s is near or above its end-to-end"
                " rate, so its latency includes a growing queue (try a lower --latency-rate)"
            )
    for name, (a, b, path) in RATIOS.items():
        if a not in results or b not in results:
            continue
        r = ratio(results, a, b, *path)
        out.append(f"{name}: {'n/a' if r is None else f'{r:.2f}x'}")
    return "\n".join(out)


RATIOS = {
    "taskchan/raw end-to-end": ("taskchan", "raw", ("end_to_end", "jobs_per_s")),
    "taskchan/celery end-to-end": ("taskchan", "celery", ("end_to_end", "jobs_per_s")),
    "taskchan/raw send": ("taskchan", "raw", ("send_only", "send_per_s")),
    # What choosing handoff="celery" for a channel costs (taskchan/handoff.py).
    "taskchan→celery/taskchan end-to-end": ("handoff", "taskchan", ("end_to_end", "jobs_per_s")),
    "taskchan→celery/celery end-to-end": ("handoff", "celery", ("end_to_end", "jobs_per_s")),
    "taskchan→celery/taskchan send": ("handoff", "taskchan", ("send_only", "send_per_s")),
    "taskchan→celery/celery send": ("handoff", "celery", ("send_only", "send_per_s")),
    # The hand-off design not chosen, against the one shipped (only with --only ...,relay).
    "relay/taskchan→celery end-to-end": ("relay", "handoff", ("end_to_end", "jobs_per_s")),
    "relay/taskchan→celery p50": ("relay", "handoff", ("latency", "p50_ms")),
    # Spreading channels over two Redis servers on the same machine (--only ...,multi,sharded).
    "4 channels/1 channel end-to-end": ("multi", "taskchan", ("end_to_end", "jobs_per_s")),
    "2 Redis/1 Redis (4 channels) end-to-end": ("sharded", "multi", ("end_to_end", "jobs_per_s")),
    "2 Redis/1 Redis (4 channels) send": ("sharded", "multi", ("send_only", "send_per_s")),
    # What symmetric_encryption_keys costs (--encrypted).
    "encrypted/taskchan end-to-end": ("encrypted", "taskchan", ("end_to_end", "jobs_per_s")),
    "encrypted/taskchan send": ("encrypted", "taskchan", ("send_only", "send_per_s")),
    "encrypted/taskchan p50": ("encrypted", "taskchan", ("latency", "p50_ms")),
    "encrypted/taskchan p99": ("encrypted", "taskchan", ("latency", "p99_ms")),
}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("channels", "channels_redis", "celery", "kombu", "redis", "Django"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="jobs per measurement (default 20000; 2000 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 2000 jobs, 1 s latency run")
    p.add_argument(
        "--only",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated subset of: {','.join(SYSTEMS)} (default {','.join(DEFAULT_SYSTEMS)})",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="run every system K times, in rotating order, and report the medians",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument(
        "--latency-rate", type=float, default=1000.0, help="paced jobs/s in the latency run"
    )
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help="length of the latency run (3; 1 with --quick)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds each measurement may take (default max(60, jobs/100))",
    )
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the temp dir with the workers' and Redis' logs",
    )
    p.add_argument(
        "--redis-server", default=shutil.which("redis-server"), help="redis-server binary"
    )
    p.add_argument(
        "--encrypted", action="store_true",
        help="add a taskchan row with the layer's symmetric_encryption_keys (bench/settings_encrypted.py)",
    )
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.encrypted and "encrypted" not in args.only:
        args.only.append("encrypted")
    unknown = set(args.only) - set(SYSTEMS)
    if unknown or not args.only:
        p.error(
            f"--only takes a comma-separated subset of {','.join(SYSTEMS)}; got {sorted(unknown) or 'nothing'}"
        )
    if args.jobs is None:
        args.jobs = 2000 if args.quick else 20000
    if args.latency_seconds is None:
        args.latency_seconds = 1.0 if args.quick else 3.0
    if args.timeout is None:
        args.timeout = max(60.0, args.jobs / 100)
    if args.repeat < 1:
        p.error("--repeat must be 1 or more")
    if args.jobs < 1 or args.latency_rate <= 0 or args.latency_seconds <= 0:
        p.error("--jobs, --latency-rate and --latency-seconds must be positive")
    if not args.redis_server:
        p.error("redis-server not found on PATH; pass --redis-server")
    return args


def _exit_on_signal(signum, frame):
    print(f"\n{signal.Signals(signum).name}: stopping the bench's processes", file=sys.stderr)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks below


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C raises KeyboardInterrupt even where SIGINT was inherited as ignored
    # (a shell's background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="taskchan-bench-"))
    results: dict = {}
    try:
        server = RedisServer(procs, workdir, args.redis_server)
        server.start()
        params = {
            "jobs": args.jobs,
            "latency_rate": args.latency_rate,
            "latency_seconds": args.latency_seconds,
            "timeout": args.timeout,
            "repeat": args.repeat,
            "redis_version": server.version(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg()[0],
            "versions": versions(),
        }
        second = None
        if "sharded" in args.only:
            from taskchan.stores.sharded import shard_index

            # Two channels homed on each host, or the row measures something else.
            assert [shard_index(c, 2) for c in SPREAD_CHANNELS] == [0, 0, 1, 1]
            second = RedisServer(procs, workdir, args.redis_server, name="redis-2")
            second.start()
        bench = Bench(args, procs, server, workdir, second)
        rounds: dict[str, list[dict]] = {system: [] for system in args.only}
        for k in range(args.repeat):
            # Rotate the order each round, so a load spike or drift on the
            # machine does not always land on the same system.
            order = args.only[k % len(args.only) :] + args.only[: k % len(args.only)]
            for system in order:
                suffix = f" (round {k + 1}/{args.repeat})" if args.repeat > 1 else ""
                print(f"{LABELS[system]}{suffix}:", file=sys.stderr, flush=True)
                res = {"label": LABELS[system]}
                rounds[system].append(res)
                try:
                    bench.run(system, res)
                except Exception as exc:
                    msg = (
                        str(exc) if isinstance(exc, PhaseError) else f"{type(exc).__name__}: {exc}"
                    )
                    print(f"  FAILED: {msg}", file=sys.stderr, flush=True)
                    res["error"] = msg
        for system in args.only:
            results[system] = merge_rounds(rounds[system]) if args.repeat > 1 else rounds[system][0]
            if args.repeat > 1:
                results[system]["rounds"] = rounds[system]
        params["loadavg_end"] = os.getloadavg()[0]
        print()
        print(report(results, params))
        if args.json:
            ratios = {name: ratio(results, a, b, *path) for name, (a, b, path) in RATIOS.items()}
            data = {"params": params, "results": results, "ratios": ratios}
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        return 1 if any("error" in r for r in results.values()) else 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the bench's processes", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()  # workers, producers and redis-server, whatever state they are in
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
