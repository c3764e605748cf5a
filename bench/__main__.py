"""``python -m bench`` runs the benchmark (``bench/cli.py``; see ``bench/README.md``)."""

from bench.cli import main

raise SystemExit(main())
