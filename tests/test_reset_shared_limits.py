"""SharedRateLimiter: limits that hold across processes, against a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailreset import (
    ConfigurationError,
    MemoryUserStore,
    PasswordReset,
    RateLimiter,
    SharedRateLimiter,
)
from mailreset.messages import MessageBuilder
from mailreset.testing._smtp import free_port
from mailreset.tokens import TokenService
from tests.browser_support import in_ci
from tests.rq_support import RedisServer

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = (
    "the SharedRateLimiter tests need limits[redis]: pip install 'mailreset[limits]' redis"
)

try:
    import limits  # noqa: F401 - only whether it is there
    import redis
except ImportError:  # pragma: no cover - depends on the environment
    if in_ci():
        raise
    pytest.skip(INSTALL_HINT, allow_module_level=True)

pytestmark = pytest.mark.redis


def _env() -> dict[str, str]:
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


COUNTER = """
import sys
from mailreset import SharedRateLimiter
limiter = SharedRateLimiter(sys.argv[1], per_address=3, per_client=5)
print(sum(limiter.allow(sys.argv[2], sys.argv[3]) for _ in range(int(sys.argv[4]))))
"""


def _allowed_in_processes(url: str, kind: str, key: str, processes: int, each: int) -> list[int]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTER, url, kind, key, str(each)],
            env=_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    return [int(child.communicate(timeout=60)[0]) for child in children]


def test_is_a_rate_limiter() -> None:
    """It satisfies the RateLimiter protocol (memory:// needs no server)."""
    assert isinstance(SharedRateLimiter("memory://"), RateLimiter)


def test_address_limit_holds_across_four_processes(redis_server: RedisServer) -> None:
    """Four processes ask 3 times each for one address: 3 allowed in all, not 3 each."""
    counts = _allowed_in_processes(redis_server.url, "address", "ann@example.org", 4, 3)

    assert 3 == sum(counts)
    assert 0 == sum(_allowed_in_processes(redis_server.url, "address", "ann@example.org", 1, 1))
    assert 3 == sum(_allowed_in_processes(redis_server.url, "address", "bob@example.org", 2, 3))


def test_client_limit_is_its_own(redis_server: RedisServer) -> None:
    """The client limit (5 here) is counted apart from the address limit (3)."""
    counts = _allowed_in_processes(redis_server.url, "client", "203.0.113.9", 3, 3)

    assert 5 == sum(counts)


def test_limits_survive_a_new_limiter(redis_server: RedisServer) -> None:
    """A restarted process (a new limiter) sees the counts of the old one."""
    first = SharedRateLimiter(redis_server.url, per_address=2)
    used = [first.allow("address", "ann@example.org") for _ in range(2)]
    second = SharedRateLimiter(redis_server.url, per_address=2)

    assert [True, True] == used
    assert not second.allow("address", "ann@example.org")


def test_window_slides(redis_server: RedisServer) -> None:
    """Once the window has passed, the key is allowed again."""
    limiter = SharedRateLimiter(redis_server.url, per_address=1, window=1)
    first = [limiter.allow("address", "ann@example.org") for _ in range(2)]
    time.sleep(1.2)

    assert [True, False] == first
    assert limiter.allow("address", "ann@example.org")


def test_storage_keeps_no_address_in_clear(redis_server: RedisServer) -> None:
    """Keys are digests: the storage holds no address or IP."""
    limiter = SharedRateLimiter(redis_server.url)
    limiter.allow("address", "ann@example.org")
    limiter.allow("client", "203.0.113.9")
    keys = redis.Redis.from_url(redis_server.url).keys("*")

    assert keys
    assert not [key for key in keys if b"ann" in key or b"203.0.113" in key]


def test_two_flows_share_the_address_limit(redis_server: RedisServer, mail_outbox: Any) -> None:
    """Two flows (as in two processes) over one storage send 3 mails for 6 requests."""
    users = MemoryUserStore()
    users.add("ann@example.org", "a password 123")

    def flow() -> PasswordReset[Any]:
        return PasswordReset(
            TokenService("s3cret-key-for-tests-only-0123456789abcdef"),
            MessageBuilder(sender="Example <noreply@app.example>"),
            mail_outbox,
            users,
            reset_url="https://app.example/reset/{token}",
            app_name="Example",
            limiter=SharedRateLimiter(redis_server.url, per_address=3),
        )

    flows = [flow(), flow()]
    for _ in range(3):
        for each in flows:
            each.request("Ann@Example.org")
    for each in flows:
        each.close(timeout=10)

    assert 3 == len(mail_outbox.messages)


def test_storage_down_denies_and_logs_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No Redis answering: allow() says no (no mail without limits) and logs where, without
    the URI's password."""
    url = f"redis://:sekret-pass@127.0.0.1:{free_port()}/0"
    limiter = SharedRateLimiter(url, storage_options={"socket_connect_timeout": 2})

    assert not limiter.allow("address", "ann@example.org")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "rate-limit storage redis://127.0.0.1" in logged
    assert "sekret" not in logged
    assert "sekret" not in repr(limiter)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"storage_uri": "nosuch://x"}, "nosuch"),
        ({"storage_uri": 6379}, "storage_uri"),
        ({"storage_uri": "memory://", "window": 0}, "window"),
        ({"storage_uri": "memory://", "window": 1.5}, "window"),
        ({"storage_uri": "memory://", "per_address": 0}, "per_address"),
        ({"storage_uri": "memory://", "per_client": True}, "per_client"),
        ({"storage_uri": "memory://", "strategy": "leaky"}, "strategy"),
        ({"storage_uri": "async+memory://"}, "synchronous"),
    ],
)
def test_bad_settings_are_configuration_errors(arguments: dict[str, Any], named: str) -> None:
    """Each bad setting is refused when the limiter is made, naming it."""
    with pytest.raises(ConfigurationError, match=named):
        SharedRateLimiter(**arguments)


def test_without_limits_installed_the_error_names_the_extra() -> None:
    """Where limits is missing, making one is a ConfigurationError naming mailreset[limits]."""
    script = (
        "import sys\n"
        "sys.modules['limits'] = None\n"  # an import of limits now fails, as if missing
        "from mailreset import ConfigurationError, SharedRateLimiter\n"
        "try:\n"
        "    SharedRateLimiter('redis://127.0.0.1:6379/0')\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "pip install 'mailreset[limits]'" in result.stdout, result.stderr
