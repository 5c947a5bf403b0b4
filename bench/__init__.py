"""Benchmarks: each ``bench/bench_*.py`` measures fcos_lib against a reference in the same run.

Run one with ``python -m bench.bench_NAME``, or all with ``python -m bench`` (``make bench``).
Targets are ratios, never absolute times, so that they mean the same on any machine.
"""
from __future__ import annotations

import time


def median_ms(fns: dict, repeats: int, warm_up: bool = True) -> dict[str, float]:
    """Median wall time in ms of each function, runs interleaved so that load hits all alike.

    ``warm_up=False`` when the caller has already run each function once.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values() if warm_up else ():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * sorted(t)[len(t) // 2] for name, t in times.items()}
