"""Throughput and latency benchmark: taskchan vs raw channels_redis vs Celery.

Run ``python bench/bench.py --quick`` (or ``python -m bench --quick``) from the
repository root; see ``bench/README.md``.
"""
