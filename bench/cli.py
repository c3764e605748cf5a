"""``python -m bench``: the options, the rounds, the report, and clean-up on every exit.

One run starts its own redis-server on a free port (no persistence, in a temp
dir; the Redis on 6379 is never touched), measures every system asked for
(``bench/measure.py``) and prints one report (``bench/report.py``).  Usage:

    python -m bench [--jobs N] [--quick] [--only ceiling,raw,celery,taskchan,handoff] [--encrypted] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bench.common import SPREAD_CHANNELS
from bench.measure import Bench, PhaseError, merge_rounds
from bench.processes import Processes, start_redis
from bench.report import all_ratios, all_round_ratios, report, versions
from bench.systems import CLUSTER_SYSTEMS, DEFAULT_SYSTEMS, LABELS, SYSTEMS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
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
        "--repeat", type=int, default=1, metavar="K",
        help="run every system K times, in rotating order, and report the medians",
    )  # fmt: skip
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
        "--timeout", type=float, default=None,
        help="seconds each measurement may take (default max(60, jobs/100))",
    )  # fmt: skip
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the temp dir with the workers' and Redis' logs",
    )
    p.add_argument(
        "--redis-server", default=shutil.which("redis-server"), help="redis-server binary"
    )
    p.add_argument(
        "--profile", metavar="DIR",
        help="sample each worker and producer with py-spy during the end-to-end run; summaries in DIR",
    )  # fmt: skip
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy binary (for --profile)")
    p.add_argument(
        "--encrypted", action="store_true",
        help="add a taskchan row with the layer's symmetric_encryption_keys (bench/settings_encrypted.py)",
    )  # fmt: skip
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
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
    if args.profile and not args.py_spy:
        p.error("--profile needs py-spy (pip install py-spy) on PATH, or pass --py-spy")


def _exit_on_signal(signum, frame):
    print(f"\n{signal.Signals(signum).name}: stopping the bench's processes", file=sys.stderr)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks below


def run_rounds(bench: Bench, args: argparse.Namespace) -> dict:
    """Every system ``args.repeat`` times; one result per system (medians over rounds)."""
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
                msg = str(exc) if isinstance(exc, PhaseError) else f"{type(exc).__name__}: {exc}"
                print(f"  FAILED: {msg}", file=sys.stderr, flush=True)
                res["error"] = msg
    results = {}
    for system in args.only:
        results[system] = merge_rounds(rounds[system]) if args.repeat > 1 else rounds[system][0]
        if args.repeat > 1:
            results[system]["rounds"] = rounds[system]
    return results


def measure(args: argparse.Namespace, procs: Processes, workdir: Path) -> int:
    server = start_redis(procs, workdir, args.redis_server)
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
        second = start_redis(procs, workdir, args.redis_server, name="redis-2")
    cluster = None
    if set(args.only) & set(CLUSTER_SYSTEMS):
        # Three masters and three replicas on this machine: tests/servers.py's test cluster.
        from tests.servers import RedisClusterServers

        cluster = RedisClusterServers()
    try:
        bench = Bench(args, procs, server.url, workdir, second.url if second else None, cluster)
        results = run_rounds(bench, args)
    finally:
        if cluster is not None:
            cluster.stop()
    params["loadavg_end"] = os.getloadavg()[0]
    print()
    print(report(results, params))
    if args.json:
        data = {
            "params": params, "results": results, "ratios": all_ratios(results),
            "round_ratios": all_round_ratios(results),
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 1 if any("error" in r for r in results.values()) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C raises KeyboardInterrupt even where SIGINT was inherited as ignored
    # (a shell's background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="taskchan-bench-"))
    try:
        return measure(args, procs, workdir)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the bench's processes", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()  # workers, producers and redis-server, whatever state they are in
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
