"""The printed report: one table of rates, one of CPU per job, the warnings, the ratios."""

from __future__ import annotations

import platform
import statistics
from importlib import metadata

from bench.processes import STOP_TIMEOUT
from bench.systems import CEILING

RATIOS = {
    "taskchan/ceiling end-to-end": ("taskchan", "ceiling", ("end_to_end", "jobs_per_s")),
    "taskchan/ceiling send": ("taskchan", "ceiling", ("send_only", "send_per_s")),
    "taskchan/raw end-to-end": ("taskchan", "raw", ("end_to_end", "jobs_per_s")),
    "taskchan/celery end-to-end": ("taskchan", "celery", ("end_to_end", "jobs_per_s")),
    "taskchan/raw send": ("taskchan", "raw", ("send_only", "send_per_s")),
    # What choosing handoff="celery" for a channel costs (taskchan/handoff/).
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
    # The same four channels on a three-master Redis Cluster (--only ...,multi,sharded,cluster,durable).
    "cluster/1 Redis (4 channels) end-to-end": ("cluster", "multi", ("end_to_end", "jobs_per_s")),
    "cluster/2 Redis (4 channels) end-to-end": ("cluster", "sharded", ("end_to_end", "jobs_per_s")),
    "cluster/1 Redis (4 channels) send": ("cluster", "multi", ("send_only", "send_per_s")),
    # What waiting for a replica costs (TASKCHAN_SEND_REPLICAS = 1, docs/deploying.md "Durable sends").
    "durable/cluster send": ("durable", "cluster", ("send_only", "send_per_s")),
    "durable/cluster end-to-end": ("durable", "cluster", ("end_to_end", "jobs_per_s")),
    "durable/cluster p50": ("durable", "cluster", ("latency", "p50_ms")),
    # What symmetric_encryption_keys costs (--encrypted).
    "encrypted/taskchan end-to-end": ("encrypted", "taskchan", ("end_to_end", "jobs_per_s")),
    "encrypted/taskchan send": ("encrypted", "taskchan", ("send_only", "send_per_s")),
    "encrypted/taskchan p50": ("encrypted", "taskchan", ("latency", "p50_ms")),
    "encrypted/taskchan p99": ("encrypted", "taskchan", ("latency", "p99_ms")),
    # What keeping every message's status costs (--only taskchan,nostatus): status on / off.
    "taskchan/status off end-to-end": ("taskchan", "nostatus", ("end_to_end", "jobs_per_s")),
    "taskchan/status off send": ("taskchan", "nostatus", ("send_only", "send_per_s")),
    # taskchan's django.tasks backend against the others (--only dtasks,threadmill,dtredis,dtdb).
    "dtasks/threadmill end-to-end": ("dtasks", "threadmill", ("end_to_end", "jobs_per_s")),
    "dtasks/django-tasks-redis end-to-end": ("dtasks", "dtredis", ("end_to_end", "jobs_per_s")),
    "dtasks/django-tasks-db end-to-end": ("dtasks", "dtdb", ("end_to_end", "jobs_per_s")),
    "dtasks/taskchan end-to-end": ("dtasks", "taskchan", ("end_to_end", "jobs_per_s")),
    "dtasks/threadmill send": ("dtasks", "threadmill", ("send_only", "send_per_s")),
    "dtasks/django-tasks-redis send": ("dtasks", "dtredis", ("send_only", "send_per_s")),
    "dtasks/django-tasks-db send": ("dtasks", "dtdb", ("send_only", "send_per_s")),
    # Bulk sending (--only taskchan,sendmany): send_many in chunks against a loop of send().
    "send_many/send loop send": ("sendmany", "taskchan", ("send_only", "send_per_s")),
    "send_many/send loop end-to-end": ("sendmany", "taskchan", ("end_to_end", "jobs_per_s")),
    # What progress reporting costs (--only taskchan,progress): 100 progress calls per job / none.
    "taskchan/progress end-to-end": ("taskchan", "progress", ("end_to_end", "jobs_per_s")),
}
#: Redis commands named per row in the CPU table (the busiest by Redis time).
COMMANDS_SHOWN = 5


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


def table(header: list[str], rows: list[list[str]], text_last: bool = False) -> list[str]:
    """Columns padded to their widest cell: numbers right-aligned, the first
    column (and with ``text_last`` the last one) left-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    text = {0, len(header) - 1} if text_last else {0}

    def line(cells):
        padded = [
            c.ljust(w) if i in text else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return " | ".join(padded).rstrip()

    return [line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)]


def rates_table(results: dict) -> list[str]:
    header = [
        "system",
        "jobs/s end-to-end",
        "of ceiling",
        "send/s",
        "p50 ms",
        "p99 ms",
        "worker RSS MB",
    ]
    rows = []
    for system, res in results.items():
        of_ceiling = (
            ratio(results, system, CEILING, "end_to_end", "jobs_per_s")
            if CEILING in results
            else None
        )
        rows.append([
            res["label"],
            fmt(get(res, "end_to_end", "jobs_per_s")),
            "n/a" if of_ceiling is None else f"{of_ceiling:.0%}",
            fmt(get(res, "send_only", "send_per_s")),
            fmt(get(res, "latency", "p50_ms"), ".2f"),
            fmt(get(res, "latency", "p99_ms"), ".2f"),
            fmt(res.get("worker_rss_mb"), ".1f"),
        ])  # fmt: skip
    return table(header, rows)


def cpu_table(results: dict) -> list[str]:
    """CPU µs per job in the end-to-end run, per process, the wait for a CPU, and Redis's busiest commands."""
    header = ["system", "producer", "worker", "redis", "total", "producer waited", "worker waited",
              f"Redis per job, its {COMMANDS_SHOWN} busiest commands: calls (µs)"]  # fmt: skip
    rows = []
    for res in results.values():
        cpu = get(res, "end_to_end", "cpu_us_per_job")
        if not cpu:
            continue
        waited = get(res, "end_to_end", "cpu_wait_us_per_job") or {}
        commands = get(res, "end_to_end", "redis_commands_per_job") or {}
        busiest = sorted(commands.items(), key=lambda item: -item[1]["us_per_job"])[:COMMANDS_SHOWN]
        shown = ", ".join(
            f"{name} {c['calls_per_job']:.2f} ({c['us_per_job']:.1f})" for name, c in busiest
        )
        total = sum(v for v in cpu.values() if v is not None)
        rows.append([res["label"], *(fmt(cpu.get(k), ".0f") for k in ("producer", "worker", "redis")),
                     fmt(total, ".0f"), fmt(waited.get("producer"), ".0f"), fmt(waited.get("worker"), ".0f"),
                     shown])  # fmt: skip
    if not rows:
        return []
    return [
        "CPU µs per job in the end-to-end run (each process's user + system time / jobs; 'waited':"
        " runnable but waiting for a CPU, from schedstat):",
        "",
        *table(header, rows, text_last=True),
        "",
    ]


def warnings(results: dict, params: dict) -> list[str]:
    out = []
    if params["loadavg_start"] > 0.5:
        out.append(
            f"note: the 1-minute load average was {params['loadavg_start']:.2f} when the run started and"
            f" {params.get('loadavg_end', float('nan')):.2f} at its end (other work on the machine, or a run"
            " just before): absolute numbers are noisy, read the ratios"
        )
    for res in results.values():
        label = res["label"]
        if "error" in res:
            out.append(f"{label}: FAILED: {res['error'].splitlines()[0]}")
        out.extend(f"{label}: warning: {w}" for w in res.get("warnings", []))
        if get(res, "end_to_end", "profiled"):
            out.append(
                f"{label}: profiled with py-spy: its end-to-end figures include the sampler's cost"
            )
        if get(res, "worker_stop", "killed"):
            out.append(f"{label}: the worker did not exit within {STOP_TIMEOUT:g} s of SIGTERM")
        stored = get(res, "send_only", "stored")
        if stored is not None and stored != res["send_only"]["jobs"]:
            out.append(
                f"{label}: send-only sent {res['send_only']['jobs']} jobs but {stored} were queued"
            )
        achieved = get(res, "latency", "rate_achieved")
        if achieved and achieved < 0.95 * params["latency_rate"]:
            out.append(
                f"{label}: the producer reached only {achieved:,.0f} jobs/s in the latency run"
            )
        e2e = get(res, "end_to_end", "jobs_per_s")
        if e2e and achieved and achieved > 0.8 * e2e:
            out.append(
                f"{label}: the latency run's {achieved:,.0f} jobs/s is near or above its end-to-end"
                " rate, so its latency includes a growing queue (try a lower --latency-rate)"
            )
    return out


def report(results: dict, params: dict) -> str:
    out = [
        f"{params['jobs']} jobs end-to-end and send-only; latency at {params['latency_rate']:g} jobs/s"
        f" for {params['latency_seconds']:g} s; redis-server {params['redis_version']}, {params['cpus']} CPUs"
        + (f"; median of {params['repeat']} rounds" if params["repeat"] > 1 else ""),
        "",
        *rates_table(results),
        "",
        *cpu_table(results),
        *warnings(results, params),
    ]
    for name, (a, b, path) in RATIOS.items():
        if a in results and b in results:
            r = ratio(results, a, b, *path)
            line = f"{name}: {'n/a' if r is None else f'{r:.2f}x'}"
            if len(paired := round_ratios(results, a, b, *path)) > 1:
                line += (
                    f" (round by round: median {statistics.median(paired):.2f}x,"
                    f" {min(paired):.2f}-{max(paired):.2f}x over {len(paired)} rounds)"
                )
            out.append(line)
    return "\n".join(out)


def round_ratios(results: dict, a: str, b: str, *path) -> list[float]:
    """The ratio within each round (``--repeat``): the two systems of a round ran minutes apart at
    most, so a ratio of theirs drifts less with the machine's speed than a ratio of medians."""
    pairs = zip(results[a].get("rounds", ()), results[b].get("rounds", ()), strict=False)
    return [x / y for x, y in ((get(ra, *path), get(rb, *path)) for ra, rb in pairs) if x and y]


def all_ratios(results: dict) -> dict:
    return {name: ratio(results, a, b, *path) for name, (a, b, path) in RATIOS.items()}


def all_round_ratios(results: dict) -> dict:
    """Each ratio's per-round values (``round_ratios``), for the JSON."""
    return {
        name: round_ratios(results, a, b, *path)
        for name, (a, b, path) in RATIOS.items()
        if a in results and b in results
    }


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("channels", "channels_redis", "celery", "kombu", "redis", "Django"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
