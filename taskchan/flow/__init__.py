"""Flow control: periodic schedules, rate limits, concurrency limits, pause and resume.

``options.py`` checks a consumer's flow options at decoration time,
``schedule.py`` and ``rate.py`` are the parsed schedules and rate limits,
``pause.py`` the public ``pause``/``resume``.  The worker's side (admitting
leased messages under the limits, firing schedule slots) is
``taskchan/worker/gate.py`` and ``taskchan/worker/ticker.py``; the state lives
in the store (``taskchan/stores/keys.py``).  Guarantees: ``docs/flow-control.md``.
"""
