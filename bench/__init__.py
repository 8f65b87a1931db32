"""Benchmarks: ``python -m bench`` (the performance budget, every server side by side),
``python -m bench.bench_scale`` (10,000 connections), ``python -m bench.bench_protocol`` (the
sans-I/O core) and the others of ``docs/benchmarks.md``."""
