"""Rate limits for reset mail: the RateLimiter protocol and its in-memory implementation.

Public through :mod:`mailreset.reset`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol, runtime_checkable

import attrs

from mailreset._convert import positive_int
from mailreset.errors import ConfigurationError


@runtime_checkable
class RateLimiter(Protocol):
    """**Protocol:** decides whether one more reset mail may go out.

    ``kind`` is ``"address"`` (the normalised address asked for) or ``"client"`` (the
    ``client`` key given to :meth:`PasswordReset.request`, such as an IP). Implement it over a
    shared store (Redis, the database) when the app runs in several processes.

    .. versionadded:: 0.1
    """

    def allow(self, kind: str, key: str) -> bool:
        """Count one attempt for ``key`` and say whether it is within the limit."""
        ...


def _seconds(value: float | timedelta) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"a window must be seconds or a timedelta, not {value!r}")
    return float(value)


@attrs.define(kw_only=True)
class MemoryRateLimiter:
    """A sliding-window limiter in this process's memory, thread-safe.

    The defaults allow 3 mails per address and 10 per client in any hour, which is plenty
    for a person and little for a script. Each instance keeps its own counts: apps running
    several processes should use a shared :class:`RateLimiter` instead.

    Attributes:
        per_address: attempts allowed per normalised address within ``window``.
        per_client: attempts allowed per client key within ``window``.
        window: the sliding window, in seconds (a timedelta is accepted).
        clock: seconds as a monotonic float (tests pass a fake one).

    .. versionadded:: 0.1
    """

    per_address: int = attrs.field(default=3, validator=positive_int)
    per_client: int = attrs.field(default=10, validator=positive_int)
    window: float = attrs.field(default=3600.0, converter=_seconds)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    _hits: dict[tuple[str, str], deque[float]] = attrs.field(init=False, factory=dict, repr=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)
    _calls: int = attrs.field(init=False, default=0, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.window > 0:
            raise ConfigurationError(
                f"MemoryRateLimiter.window must be a positive number of seconds, "
                f"not {self.window!r}"
            )

    def allow(self, kind: str, key: str) -> bool:
        """Count one attempt for ``(kind, key)``; False once the limit is reached."""
        limit = self.per_address if kind == "address" else self.per_client
        now = self.clock()
        horizon = now - self.window
        with self._lock:
            self._calls += 1
            if self._calls % 1024 == 0:
                self._sweep(horizon)
            hits = self._hits.setdefault((kind, key), deque())
            while hits and hits[0] <= horizon:
                hits.popleft()
            if len(hits) >= limit:
                return False
            hits.append(now)
            return True

    def _sweep(self, horizon: float) -> None:
        # Keys nobody used within the window would otherwise stay forever.
        stale = [key for key, hits in self._hits.items() if not hits or hits[-1] <= horizon]
        for key in stale:
            del self._hits[key]
