"""Measuring one system: send-only, end-to-end, latency, memory, and where the CPU went.

For each system, in this order (``Bench.run``):

1. send-only: a producer process sends N jobs with no worker running
   (send() calls per second), then Redis is flushed;
2. end-to-end: the worker is started and warmed up, a producer sends N jobs
   as fast as it can, and jobs/s is N / (last job done - first send); the CPU
   time the producer, the worker and redis-server spent meanwhile is divided
   by N, with Redis's own count of each command (``INFO commandstats``);
3. latency: a producer sends at a paced rate (1,000 jobs/s for 3 s by
   default), each job records time.time() - content["sent_at"]; p50/p99;
4. the worker's resident memory (VmRSS of it and its children) is sampled,
   the worker is stopped with SIGTERM and Redis is flushed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis
import redis.cluster

from bench.common import DONE_KEY, LAST_DONE_KEY, LATENCY_KEY, PHASE_KEYS, SPREAD_CHANNELS
from bench.processes import Processes, cpu_seconds, run_queue_wait, tail, worker_rss_mb
from bench.profile import Profiler
from bench.systems import (
    CLUSTER_SYSTEMS,
    DJANGO_SYSTEMS,
    PG_URL,
    QUEUED,
    environments,
    worker_command,
)


def create_pg_database() -> None:
    """The django-tasks-db row's database on the local PostgreSQL, made if missing."""
    import psycopg

    base, name = PG_URL.replace("postgres://", "postgresql://").rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')

#: Jobs sent (and waited for) after a worker starts and before it is timed.
WARMUP_JOBS = 20
#: Seconds a worker may take to start and finish the warm-up jobs.
WARMUP_TIMEOUT = 90.0


class PhaseError(Exception):
    """A measurement failed or ran out of time; the system's row says why."""


def redis_usage(clients) -> dict:
    """CPU seconds redis-server used so far, and (calls, µs) per command, summed over ``clients``."""
    usage: dict = {"cpu_s": 0.0, "commands": {}}
    for client in clients:
        cpu = client.info("cpu")
        usage["cpu_s"] += float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
        for name, stat in client.info("commandstats").items():
            calls, usec = usage["commands"].get(name.removeprefix("cmdstat_"), (0, 0))
            usage["commands"][name.removeprefix("cmdstat_")] = (
                calls + stat["calls"],
                usec + stat["usec"],
            )
    return usage


def per_job(before: dict, after: dict, jobs: int) -> dict:
    """Redis's work per job between two ``redis_usage`` snapshots, busiest command first."""
    commands = {}
    for name, (calls, usec) in after["commands"].items():
        calls_before, usec_before = before["commands"].get(name, (0, 0))
        if calls > calls_before:
            commands[name] = {
                "calls_per_job": (calls - calls_before) / jobs,
                "us_per_job": (usec - usec_before) / jobs,
            }
    ranked = dict(sorted(commands.items(), key=lambda item: -item[1]["us_per_job"]))
    return {"redis_cpu_us": (after["cpu_s"] - before["cpu_s"]) * 1e6 / jobs, "commands": ranked}


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil
    return sorted_values[int(rank) - 1]


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


class Bench:
    """Runs the phases of one system after another on the bench's Redis."""

    def __init__(
        self, args, procs: Processes, redis_url: str, workdir: Path, second_url: str | None = None,
        cluster=None,
    ):
        self.args, self.procs, self.workdir = args, procs, workdir
        self.r = redis.Redis.from_url(redis_url)
        # The "sharded" row's second Redis (its store only; the bench's counters stay on the first).
        self.r2 = redis.Redis.from_url(second_url) if second_url else None
        # The cluster rows' masters (tests/servers.py RedisClusterServers): their
        # CPU and commands are counted, and they are flushed, like the others.
        self.cluster_masters = [redis.Redis(port=n.port) for n in cluster.masters()] if cluster else []
        self.cluster_url = cluster.url if cluster else None
        self.envs = environments(redis_url, workdir, second_url, self.cluster_url)
        self.profiler = Profiler(procs, Path(args.profile), args.py_spy) if args.profile else None

    # -- steps

    def log(self, msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    def servers(self) -> list[redis.Redis]:
        return [client for client in (self.r, self.r2, *self.cluster_masters) if client is not None]

    def flush(self, system: str | None = None) -> None:
        for client in self.servers():
            client.flushall()
        if system == "dtdb":  # django-tasks-db keeps its queue in PostgreSQL
            import psycopg

            with psycopg.connect(PG_URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
                conn.execute("TRUNCATE django_tasks_database_dbtaskresult")

    def reset_phase(self) -> None:
        self.r.delete(*PHASE_KEYS)

    def start_producer(
        self, system: str, count: int, target: int, rate: float = 0, latency: bool = False
    ):
        cmd = [
            sys.executable,
            "-m",
            "bench.produce",
            system,
            "--count",
            str(count),
            "--target",
            str(target),
        ]
        if rate:
            cmd += ["--rate", str(rate)]
        if latency:
            cmd.append("--latency")
        with (self.workdir / f"{system}-producer.log").open("ab") as err:
            return self.procs.start(cmd, env=self.envs[system], stdout=subprocess.PIPE, stderr=err)

    def finish_producer(self, system: str, proc, count: int, timeout: float) -> dict:
        """Wait for a producer; its JSON line (``bench/produce.py``)."""
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc, timeout=2)
            raise PhaseError(f"producer did not finish {count} sends in {timeout:.0f} s") from None
        self.procs.reaped(proc)
        if proc.returncode != 0:
            errlog = self.workdir / f"{system}-producer.log"
            raise PhaseError(f"producer exited with {proc.returncode}:\n{tail(errlog, 15)}")
        return json.loads(out.decode().strip().splitlines()[-1])

    def produce(self, system: str, count: int, target: int, timeout: float, **options) -> dict:
        proc = self.start_producer(system, count, target, **options)
        return self.finish_producer(system, proc, count, timeout)

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

    def migrate(self, system: str, res: dict) -> None:
        """Create taskchan's tables in the bench's throw-away SQLite (dead letters go there).

        Only a failing job touches the database, so a failed migrate is a
        warning, not a reason to skip the measurements.
        """
        cmd = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        errlog = self.workdir / "migrate.log"
        if system == "dtdb":
            create_pg_database()
        with errlog.open("ab") as err:
            proc = self.procs.start(
                cmd, env=self.envs[system], stdout=err, stderr=subprocess.STDOUT
            )
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                self.procs.stop(proc, timeout=2)
                res.setdefault("warnings", []).append("manage.py migrate did not finish in 120 s")
                return
            self.procs.reaped(proc)
        if proc.returncode != 0:
            res.setdefault("warnings", []).append(
                f"manage.py migrate exited with {proc.returncode}"
            )
            print(f"  warning: manage.py migrate failed:\n{tail(errlog, 15)}", file=sys.stderr)

    # -- phases

    def run(self, system: str, res: dict) -> None:
        """Measure one system into ``res``; what was measured before a failure stays there."""
        if system in DJANGO_SYSTEMS:
            self.migrate(system, res)
        self.flush(system)
        self.send_only(system, res)
        self.flush(system)
        worker_log = self.workdir / f"{system}-worker.log"
        with worker_log.open("ab") as log:
            worker = self.procs.start(
                worker_command(system), env=self.envs[system], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            try:
                # Warm-up: the worker is up, connected and has run jobs before timing.
                self.produce(system, WARMUP_JOBS, WARMUP_JOBS, timeout=WARMUP_TIMEOUT)
                self.wait_done(WARMUP_JOBS, time.monotonic() + WARMUP_TIMEOUT, worker, "warm-up")
                self.reset_phase()
                self.end_to_end(system, res, worker)
                self.reset_phase()
                self.latency(system, res, worker)
                res["worker_rss_mb"] = worker_rss_mb(worker.pid)
            except PhaseError:
                print(
                    f"--- last lines of the {system} worker's output:\n{tail(worker_log)}",
                    file=sys.stderr,
                )
                raise
        finally:
            res["worker_stop"] = self.procs.stop(worker)
            self.flush(system)

    def send_only(self, system: str, res: dict) -> None:
        """send() alone: nothing consumes, so this is the producer's cost only."""
        n = self.args.jobs
        sent = self.produce(system, n, n, timeout=self.args.timeout)
        stored = None  # not counted for the other django.tasks backends (their own key layouts)
        if system in CLUSTER_SYSTEMS:
            command, *keys = QUEUED[system]
            with redis.cluster.RedisCluster.from_url(self.cluster_url) as cluster:
                stored = sum(cluster.execute_command(command.upper(), key) for key in keys)
        elif system in QUEUED:
            command, *keys = QUEUED[system]
            servers = [c for c in (self.r, self.r2) if c is not None] if system == "sharded" else [self.r]
            stored = sum(client.execute_command(command.upper(), key) for client in servers for key in keys)
        res["send_only"] = {
            "jobs": n,
            "seconds": sent["t_last"] - sent["t_first"],
            "send_per_s": sent["send_per_s"],
            "producer_cpu_us": sent["cpu_s"] * 1e6 / n,
            "stored": stored,
        }
        self.log(f"send-only: {sent['send_per_s']:,.0f} send()/s, {stored} jobs stored")
        if system == "sharded":
            res["send_only"]["stored_per_host"] = [
                sum(client.xlen("taskchan:q:" + c) for c in SPREAD_CHANNELS) for client in servers
            ]

    def end_to_end(self, system: str, res: dict, worker: subprocess.Popen) -> None:
        """First send() to last job done, with the CPU each process spent per job."""
        n = self.args.jobs
        deadline = time.monotonic() + self.args.timeout
        redis_before, worker_cpu = redis_usage(self.servers()), cpu_seconds(worker.pid)
        worker_waited = run_queue_wait(worker.pid)
        producer = self.start_producer(system, n, n)
        profiles = (
            self.profiler.start(system, worker=worker.pid, producer=producer.pid)
            if self.profiler
            else []
        )
        try:
            sent = self.finish_producer(system, producer, n, self.args.timeout)
            last_done = self.wait_done(n, deadline, worker, "end-to-end")
        finally:
            if self.profiler:
                self.profiler.stop(profiles)
        worker_cpu = cpu_seconds(worker.pid) - worker_cpu
        worker_waited = run_queue_wait(worker.pid) - worker_waited
        redis_work = per_job(redis_before, redis_usage(self.servers()), n)
        seconds = last_done - sent["t_first"]
        res["end_to_end"] = {
            "jobs": n,
            "done_count": int(self.r.get(DONE_KEY) or 0),  # > jobs: duplicates
            "seconds": seconds,
            "jobs_per_s": n / seconds,
            "producer_send_per_s": sent["send_per_s"],
            "cpu_us_per_job": {
                "producer": sent["cpu_s"] * 1e6 / n,
                "worker": worker_cpu * 1e6 / n,
                "redis": redis_work["redis_cpu_us"],
            },
            # Runnable but waiting for a CPU (schedstat): the share of wall time lost to the others.
            "cpu_wait_us_per_job": {
                "producer": sent.get("runq_wait_s", 0.0) * 1e6 / n,
                "worker": worker_waited * 1e6 / n,
            },
            "redis_commands_per_job": redis_work["commands"],
        }
        if self.profiler:
            res["end_to_end"]["profiled"] = True
        self.log(f"end-to-end: {n / seconds:,.0f} jobs/s ({n} jobs in {seconds:.2f} s)")

    def latency(self, system: str, res: dict, worker: subprocess.Popen) -> None:
        """Latency at a paced rate: send() start to job start."""
        a = self.args
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
