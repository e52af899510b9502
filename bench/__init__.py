"""Benchmarks, run from the repository root as modules: ``python -m bench.engine``,
``python -m bench.sae``, ``python -m bench.backend``. Shared pieces live in bench.harness."""
