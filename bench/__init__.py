"""Benchmarks, run with `make bench` (`python -m bench`); never part of `make test`.

Kept free of imports: `python -m bench.startup` measures a fresh process, and importing this package is part
of what it measures."""
