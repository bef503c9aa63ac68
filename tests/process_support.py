"""Helpers for tests that fork, or count how often a thread woke up (Linux /proc)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path


def run_in_fork(work: Callable[[], object]) -> int:
    """Run ``work`` in a forked child; its exit code (0: it returned, 1: it raised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: we know
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        except BaseException as error:
            print(f"child failed: {error!r}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def voluntary_switches(*thread_ids: int | None) -> int:
    """How often these threads of this process gave up the CPU of their own accord, summed."""
    total = 0
    for thread_id in thread_ids:
        status = Path(f"/proc/self/task/{thread_id}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("voluntary_ctxt"))
        total += int(line.split()[1])
    return total
