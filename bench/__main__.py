"""Run every benchmark in ``bench/``, one after the other, each printing its own ratios."""
from __future__ import annotations

import importlib
import pathlib
import sys

import torch


def main(names: list[str]) -> int:
    here = pathlib.Path(__file__).parent
    modules = sorted(p.stem for p in here.glob("bench_*.py"))
    chosen = [m for m in modules if not names or any(n in m for n in names)]
    if not chosen:
        print(f"no benchmark matches {names}; there are: {', '.join(modules)}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    for name in chosen:
        print(f"\n=== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()
        torch.set_num_threads(threads)  # a bench that pins its threads does not pin the next
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
