"""``python -m bench`` runs the benchmark (same as ``python bench/bench.py``)."""

from bench.bench import main

raise SystemExit(main())
