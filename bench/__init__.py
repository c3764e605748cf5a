"""Throughput and latency benchmark: taskchan against bare Redis Streams (the
ceiling), raw channels_redis and Celery, on the same private Redis.

Run ``python -m bench --quick`` from the repository root; see ``bench/README.md``.
The orchestrator is ``cli.py`` (options, rounds), ``measure.py`` (the phases
of one system), ``systems.py`` (what each row runs), ``processes.py`` (children
and the private redis-server), ``report.py`` (the tables) and ``profile.py``
(``--profile``: py-spy summaries).
"""
