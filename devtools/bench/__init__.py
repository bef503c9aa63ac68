"""Benchmarks: our code and its anchors measured side by side in one run (``nox -s bench``).

Each ``bench_*.py`` module here defines ``run(options) -> list[Comparison]``; ``__main__``
finds them, runs them in order and prints one table of ratios. Machines are noisy, so every
comparison measures both sides in the same process, interleaved, and reports medians.
"""
