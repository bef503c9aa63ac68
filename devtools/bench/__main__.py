"""``python -m devtools.bench [--quick] [NAME ...]``: run the benchmarks, print ratios."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import devtools.bench
from devtools.bench.harness import Comparison, Options, format_table

# Modules measured against the same anchor print side by side: Celery right after RQ.
_BESIDE = {"celery": "rq"}


def _print_order(name: str) -> tuple[str, bool]:
    """Alphabetical, except that a module of ``_BESIDE`` follows the one it names."""
    return (_BESIDE.get(name, name), name in _BESIDE)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmark modules and print one table."""
    parser = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="only these modules (tokens, messages, ...)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per figure")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, rounds=2 if args.quick else args.rounds)

    modules = sorted(
        (
            info.name.removeprefix("bench_")
            for info in pkgutil.iter_modules(devtools.bench.__path__)
            if info.name.startswith("bench_")
        ),
        key=_print_order,
    )
    unknown = set(args.names) - set(modules)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {modules}")
    comparisons: list[Comparison] = []
    for name in args.names or modules:
        module = importlib.import_module(f"devtools.bench.bench_{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results = module.run(options)
        comparisons.extend(results)
        print(format_table(results), file=sys.stderr, flush=True)
    print()
    print(format_table(comparisons))
    missed = [item.name for item in comparisons if item.met is False]
    if missed:
        print(f"\n{len(missed)} target(s) missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
