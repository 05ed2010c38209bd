"""The performance harness: ``python -m benchmarks [--only NAME]``.

Every module ``benchmarks/bench_*.py`` is imported and registers its benchmarks with
:func:`benchmarks.harness.benchmark`; results go to ``benchmarks/results/``.
"""
