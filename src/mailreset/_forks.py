"""One count of this process's forks, for objects that must start afresh in a child.

An object notes ``forks[0]`` when it sets up its threads and locks, and compares it on use: a
read from a list is cheaper on a hot path (``send``, ``request``) than an ``os.getpid()``
system call. ``fork_lock[0]`` serialises a child's set-up of its per-process state (two
threads using an object first after a fork must not both set it up); it is made anew in each
child, since the parent's may have been held by another thread at the moment of the fork.
"""

from __future__ import annotations

import os
import threading

#: ``forks[0]``: how many forks lie between the first process and this one.
forks = [0]
#: ``fork_lock[0]``: held while a child sets up an object's per-process state.
fork_lock = [threading.Lock()]


def _after_fork_in_child() -> None:
    forks[0] += 1
    fork_lock[0] = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
