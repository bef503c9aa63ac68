"""A Future that is cheap to make on the caller's path: its lock and lists come on first use.

``concurrent.futures.Future()`` builds a Condition (with its RLock) and two lists at once:
a dozen allocations that, on a burst, trigger the garbage collector often enough to put
``ThreadedMailer.send``'s p99 at 30x a bare ``Queue.put``. This subclass makes them when the
worker (or a waiting caller) first touches them, under one shared lock, so it is still a
real, thread-safe ``Future``. It also carries the queued message, so the queue item is the
Future itself.

The worker's two transitions (running, then finished) skip the Condition altogether while no
one has touched it: every reader (``result``, ``done``, ``wait``, ``add_done_callback``,
``cancel``) makes it first, under the same lock the transitions check, so nobody can miss a
notification; on a burst nobody waits on most Futures, and none of them ever gets one.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

_MAKING = threading.Lock()


class PendingDelivery(Future):  # type: ignore[type-arg]
    """The Future of one queued message, and the queue item carrying it."""

    # Future.__init__ is skipped on purpose: the Condition and lists are made lazily, and the
    # starting state is read from the class until a transition sets it on the instance.
    _state = "PENDING"
    _result = None
    _exception = None

    def __init__(self, payload: Any, path: Path | None, message: Any) -> None:
        self.payload = payload
        self.path = path
        self.message = message

    def _lazy(self, name: str, make: Any) -> Any:
        try:
            return self.__dict__[name]
        except KeyError:
            with _MAKING:
                return self.__dict__.setdefault(name, make())

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        return self._lazy("_lazy_condition", threading.Condition)  # type: ignore[no-any-return]

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        return self._lazy("_lazy_waiters", list)  # type: ignore[no-any-return]

    @property
    def _done_callbacks(self) -> list[Any]:
        return self._lazy("_lazy_callbacks", list)  # type: ignore[no-any-return]

    def set_running_or_notify_cancel(self) -> bool:
        """Mark the Future running (see :class:`~concurrent.futures.Future`)."""
        with _MAKING:
            if "_lazy_condition" not in self.__dict__ and self._state == "PENDING":
                self._state = "RUNNING"
                return True
        return super().set_running_or_notify_cancel()

    def set_result(self, result: Any) -> None:
        """Finish the Future with ``result`` (see :class:`~concurrent.futures.Future`)."""
        with _MAKING:
            if "_lazy_condition" not in self.__dict__ and self._state in ("PENDING", "RUNNING"):
                # No Condition yet: no waiter, no callback, nothing to notify.
                self._result = result
                self._state = "FINISHED"
                return
        super().set_result(result)
