"""Benchmarks: ``python -m bench.bench_protocol`` (sans-I/O core) and ``python -m bench.bench_echo``."""
