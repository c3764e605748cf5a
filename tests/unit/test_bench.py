"""The benchmark's own arithmetic (``bench/``): what it computes from what it measured.

The benchmark itself runs with ``make bench``; these check, without running
it, that its per-job figures, medians, profile summaries and the "of ceiling"
column say what they claim.
"""

from __future__ import annotations

from bench.measure import merge_rounds, per_job
from bench.profile import summarise
from bench.report import rates_table


def test_per_job_divides_what_redis_did_meanwhile_by_the_jobs_busiest_first():
    before = {"cpu_s": 1.0, "commands": {"xadd": (10, 100), "get": (5, 5)}}
    after = {"cpu_s": 1.5, "commands": {"xadd": (1010, 3100), "get": (5, 5), "xack": (20, 9000)}}

    work = per_job(before, after, 1000)

    assert work["redis_cpu_us"] == 500.0
    assert work["commands"] == {
        "xack": {"calls_per_job": 0.02, "us_per_job": 9.0},
        "xadd": {"calls_per_job": 1.0, "us_per_job": 3.0},
    }  # "get" ran no call meanwhile: left out
    assert list(work["commands"]) == ["xack", "xadd"]


def test_merge_rounds_takes_medians_and_keeps_every_error():
    rounds = [
        {"label": "x", "end_to_end": {"jobs_per_s": 1.0}, "error": "first"},
        {"label": "x", "end_to_end": {"jobs_per_s": 5.0}, "warnings": ["slow"]},
        {"label": "x", "end_to_end": {"jobs_per_s": 3.0}, "error": "third"},
    ]

    merged = merge_rounds(rounds)

    assert merged["end_to_end"]["jobs_per_s"] == 3.0
    assert merged["error"] == "first; third"
    assert merged["warnings"] == ["slow"]


def test_profile_summary_counts_self_inclusive_and_only_inside_the_loop_when_asked():
    collapsed = "\n".join([
        "main (a.py:1);produce_sync (b.py:2);send (taskchan/producer.py:3) 6",
        "main (a.py:1);produce_sync (b.py:2);send (taskchan/producer.py:9);xadd (r.py:4) 3",
        "main (a.py:1);setup (django/x.py:5) 11",
    ])  # fmt: skip

    whole = summarise(collapsed)
    loop = summarise(collapsed, ("produce_sync",))

    assert whole.startswith("20 samples")
    assert loop.startswith("9 samples")
    assert "100.0        9  send (taskchan/producer.py)" in loop  # inclusive, line numbers folded
    assert " 66.7        6  send (taskchan/producer.py)" in loop  # self
    assert "setup" not in loop


def test_every_row_is_also_a_fraction_of_the_ceiling():
    results = {
        "ceiling": {"label": "ceiling", "end_to_end": {"jobs_per_s": 4000.0}},
        "taskchan": {"label": "taskchan", "end_to_end": {"jobs_per_s": 3000.0}},
        "celery": {"label": "Celery", "error": "worker exited"},
    }

    lines = rates_table(results)

    assert [line.split("|")[2].strip() for line in lines[2:]] == ["100%", "75%", "n/a"]


def test_the_cpu_table_shows_the_wait_for_a_cpu_and_the_busiest_redis_commands():
    from bench.report import cpu_table

    results = {
        "taskchan": {
            "label": "taskchan",
            "end_to_end": {
                "cpu_us_per_job": {"producer": 150.0, "worker": 230.0, "redis": 50.0},
                "cpu_wait_us_per_job": {"producer": 180.0, "worker": 650.0},
                "redis_commands_per_job": {
                    "xadd": {"calls_per_job": 1.0, "us_per_job": 3.0},
                    "evalsha": {"calls_per_job": 1.0, "us_per_job": 14.0},
                },
            },
        },
        "celery": {"label": "Celery", "error": "worker exited"},  # nothing measured: no row
    }

    [row] = [line for line in cpu_table(results) if line.startswith("taskchan")]

    cells = [cell.strip() for cell in row.split("|")]
    assert cells[1:7] == ["150", "230", "50", "430", "180", "650"]
    assert cells[7] == "evalsha 1.00 (14.0), xadd 1.00 (3.0)"


def test_a_ratio_is_also_given_round_by_round():
    from bench.report import all_round_ratios, report

    def rounds(*rates):
        return [{"end_to_end": {"jobs_per_s": r}} for r in rates]

    results = {
        "taskchan": {"label": "on", "end_to_end": {"jobs_per_s": 900.0}, "rounds": rounds(900, 450, 1800)},
        "nostatus": {"label": "off", "end_to_end": {"jobs_per_s": 1000.0}, "rounds": rounds(1000, 500, 1000)},
    }
    params = {
        "jobs": 10, "latency_rate": 1, "latency_seconds": 1, "redis_version": "7", "cpus": 2, "repeat": 3,
        "loadavg_start": 0.1, "loadavg_end": 0.1,
    }

    paired = all_round_ratios(results)["taskchan/status off end-to-end"]
    text = report(results, params)

    assert paired == [0.9, 0.9, 1.8]  # each round's own ratio; the medians' ratio is 0.9 too
    assert "taskchan/status off end-to-end: 0.90x (round by round: median 0.90x, 0.90-1.80x over 3 rounds)" in text
