"""Benchmarks: each ``bench/bench_*.py`` measures fcos_lib against a reference in the same run.

Run one with ``python -m bench.bench_NAME``, or all with ``python -m bench`` (``make bench``).
Targets are ratios, never absolute times, so that they mean the same on any machine.
"""
