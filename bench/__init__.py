"""The benchmark suite: ``python bench/run.py`` (see bench/README.md and docs/benchmarks.md)."""
