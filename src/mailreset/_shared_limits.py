"""A RateLimiter shared by every process and machine of an app, over the ``limits`` library.

Needs the ``limits`` extra: ``pip install 'mailreset[limits]'`` (and the client of the storage:
``limits[redis]``, ``limits[memcached]``, ...). Public through :mod:`mailreset`.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from mailreset._convert import is_number, whole_number
from mailreset.errors import ConfigurationError

logger = logging.getLogger("mailreset")

_STRATEGIES = {
    "moving-window": "MovingWindowRateLimiter",
    "sliding-window-counter": "SlidingWindowCounterRateLimiter",
    "fixed-window": "FixedWindowRateLimiter",
}
#: Seconds a Redis or Memcached call may take before the limiter gives up (and denies): the
#: flow's worker, not the caller, waits for it, but a frozen server must not hold it forever.
_STORAGE_TIMEOUT = 5.0


def _import_limits() -> Any:
    try:
        import limits
        import limits.errors
        import limits.storage
        import limits.strategies
    except ImportError as error:
        raise ConfigurationError(
            "SharedRateLimiter needs the limits library: pip install 'mailreset[limits]' "
            f"({error})"
        ) from error
    return limits


def _where(storage_uri: str) -> str:
    """The storage's scheme and host, for messages: never its password or path."""
    try:
        parts = urlsplit(storage_uri)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable storage_uri>"
    return f"{parts.scheme}://{host}{port}"


def _whole_seconds(value: object) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not is_number(seconds) or seconds < 1 or seconds != int(seconds):
        raise ConfigurationError(
            f"SharedRateLimiter.window must be a whole number of seconds >= 1 (or a "
            f"timedelta), not {value!r}"
        )
    return int(seconds)


class SharedRateLimiter:
    """A :class:`~mailreset.reset.RateLimiter` whose counts live in a shared storage.

    Use it when the app runs in more than one process (gunicorn workers, several machines):
    every process then counts against the same limits, and the counts survive restarts.
    The in-memory default counts per process, so 4 workers allow each address 4x its limit.

    Args:
        storage_uri: a `limits` storage, such as ``"redis://localhost:6379/0"``,
            ``"rediss://..."``, ``"redis+sentinel://..."``, ``"memcached://host:11211"`` or
            ``"memory://"`` (one process only: for tests).
        per_address: mails allowed per normalised address within ``window``.
        per_client: mails allowed per client key (an IP, say) within ``window``.
        window: seconds (a whole number, or a timedelta).
        strategy: ``"moving-window"`` (exact, the default), ``"sliding-window-counter"``
            (cheaper, approximate) or ``"fixed-window"`` (cheapest; allows bursts at the
            edges). Memcached supports only the last two.
        namespace: prefix of the storage keys, so apps can share one storage.
        storage_options: passed to the storage client (``limits``' ``storage_from_string``);
            Redis and Memcached get 5-second timeouts unless given here.

    Keys are stored as SHA-256 digests: the storage never holds an address or IP in clear.
    When the storage fails (down, timed out), :meth:`allow` logs an error and answers False:
    no mail goes out rather than mail without limits.

    Raises :class:`~mailreset.errors.ConfigurationError` for a bad setting, an unknown
    storage scheme, a storage without the strategy, or when ``limits`` (the extra
    ``mailreset[limits]``) or the storage's client library is not installed. Making one does
    not connect: the storage need not be up yet.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        storage_uri: str,
        *,
        per_address: int = 3,
        per_client: int = 10,
        window: float | timedelta = 3600,
        strategy: str = "moving-window",
        namespace: str = "mailreset",
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(storage_uri, str) or "://" not in storage_uri:
            raise ConfigurationError(
                "SharedRateLimiter.storage_uri must be a limits storage URI such as "
                f"'redis://localhost:6379/0', not {type(storage_uri).__name__}"
            )
        for name, value in (("per_address", per_address), ("per_client", per_client)):
            whole_number(f"SharedRateLimiter.{name}", value)
        seconds = _whole_seconds(window)
        if strategy not in _STRATEGIES:
            raise ConfigurationError(
                f"SharedRateLimiter.strategy must be one of {', '.join(_STRATEGIES)}, "
                f"not {strategy!r}"
            )
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError("SharedRateLimiter.namespace must be a non-empty string")
        limits = _import_limits()
        self.where = _where(storage_uri)
        self.per_address, self.per_client, self.window = per_address, per_client, seconds
        self.strategy, self.namespace = strategy, namespace
        options: dict[str, Any] = {"wrap_exceptions": True}
        scheme = storage_uri.partition("://")[0].lower()
        if scheme.startswith(("redis", "rediss")):
            options.update(
                socket_timeout=_STORAGE_TIMEOUT, socket_connect_timeout=_STORAGE_TIMEOUT
            )
        elif scheme.startswith("memcached"):
            options.update(connect_timeout=_STORAGE_TIMEOUT, timeout=_STORAGE_TIMEOUT)
        elif scheme == "memory":
            options = {}
        options.update(storage_options or {})
        try:
            storage = limits.storage.storage_from_string(storage_uri, **options)
        except (limits.errors.ConfigurationError, ImportError, ValueError, TypeError) as error:
            raise ConfigurationError(
                f"SharedRateLimiter: cannot use the storage {self.where}: {error} (a storage "
                "client may be missing: pip install 'limits[redis]', 'limits[memcached]', ...)"
            ) from None
        if not isinstance(storage, limits.storage.Storage):
            raise ConfigurationError(
                f"SharedRateLimiter needs a synchronous storage, not {self.where} (drop 'async+')"
            )
        try:
            self._limiter = getattr(limits.strategies, _STRATEGIES[strategy])(storage)
        except NotImplementedError:
            raise ConfigurationError(
                f"SharedRateLimiter: the storage {self.where} does not support the "
                f"{strategy!r} strategy; pass strategy='fixed-window' or "
                "'sliding-window-counter'"
            ) from None
        self._items = {
            "address": limits.RateLimitItemPerSecond(per_address, seconds, namespace=namespace),
            "client": limits.RateLimitItemPerSecond(per_client, seconds, namespace=namespace),
        }
        self._storage_errors: tuple[type[BaseException], ...] = (
            limits.errors.StorageError,
            OSError,
        )

    def allow(self, kind: str, key: str) -> bool:
        """Count one attempt for ``(kind, key)`` in the shared storage; False over the limit.

        ``kind`` ``"address"`` uses ``per_address``, anything else ``per_client``. False too
        (and an error logged) when the storage does not answer.
        """
        item = self._items["address" if kind == "address" else "client"]
        digest = hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        try:
            allowed: bool = self._limiter.hit(item, kind, digest)
        except self._storage_errors as error:
            logger.error(
                "rate-limit storage %s failed (%s); reset mail refused until it answers",
                self.where,
                type(error).__name__,
            )
            return False
        return allowed

    def __repr__(self) -> str:
        return (
            f"<SharedRateLimiter {self.where} per_address={self.per_address} "
            f"per_client={self.per_client} window={self.window}s {self.strategy}>"
        )
