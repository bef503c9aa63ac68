"""Each example under gunicorn with 4 workers, SharedRateLimiter on a real Redis, SQLite users.

What holds inside one process must hold across the workers of a real server: a reset link
works once, the per-address and per-client limits count every worker's requests, and a forged
X-Forwarded-For changes nothing. The Flask example also runs with ``--preload`` (the app, its
flow and mailer made before the fork).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.browser_support import in_ci

try:
    import gunicorn  # noqa: F401 - only whether it is there
    import httpx
    import limits  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    if in_ci():
        raise
    pytest.skip(
        f"needs gunicorn, httpx and limits[redis] ({error}): pip install gunicorn httpx "
        "'mailreset[limits]' redis",
        allow_module_level=True,
    )

from examples.sqlite_users import SQLiteUsers, check_password

from mailreset.testing import SMTPSink
from mailreset.tokens import TokenService
from tests.multiproc.support import (
    PASSWORD_COST,
    TOKEN_KEY,
)
from tests.multiproc.support import (
    gunicorn as serve,
)
from tests.rq_support import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis]

EXAMPLES = ["flask", "bottle"]
EMAIL = "ann@example.org"
PASSWORD = "first password 1"
#: Concurrent completions of one link.
RACERS = 20
#: How long to wait for mail that must not come (the flows work in the background).
GRACE = 3.0

T = TypeVar("T")


def _users(tmp_path: Path, *emails: str) -> tuple[Path, SQLiteUsers]:
    database = tmp_path / "users.db"
    users = SQLiteUsers(str(database), password_cost=PASSWORD_COST)
    for email in emails:
        assert users.create(email, PASSWORD) is not None
    return database, users


def _form(client: httpx.Client, path: str) -> str:
    """GET the form at ``path`` (starting the session); its CSRF token."""
    page = client.get(path)
    assert 200 == page.status_code, page.text[:500]
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None, f"no CSRF field at {path}"
    return match.group(1)


def _flash_after(client: httpx.Client, reply: httpx.Response) -> str:
    """Follow the redirect of a POST and return the flashed text."""
    assert reply.status_code in {302, 303}, (reply.status_code, reply.text[:500])
    page = client.get(reply.headers["location"])
    return " | ".join(re.findall(r'class="flash[^"]*" role="status">([^<]*)<', page.text))


def _all_at_once(calls: list[Callable[[], T]], timeout: float = 120.0) -> list[T]:
    """Run the calls in threads released together; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait(timeout)
        try:
            results[index] = calls[index]()
        except Exception as error:  # reported below, with the others
            results[index] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    return results


def _no_more_mail(smtp_sink: SMTPSink, count: int) -> None:
    """Exactly ``count`` messages arrived: no more within the grace time."""
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(count + 1, timeout=GRACE)


@pytest.mark.parametrize("example", EXAMPLES)
def test_one_link_completed_twenty_times_at_once_resets_once(
    example: str, tmp_path: Path, redis_server: RedisServer, smtp_sink: SMTPSink
) -> None:
    """20 browsers post one link with 20 new passwords at once, across 4 workers: one
    succeeds, 19 see "already used" (StaleToken), and the stored password is the winner's."""
    database, users = _users(tmp_path, EMAIL)
    user = users.find_by_email(EMAIL)
    assert user is not None
    token = TokenService(TOKEN_KEY).issue("reset_password", str(user.id), bind=user.password_hash)
    passwords = [f"new passphrase number {n}" for n in range(RACERS)]

    with serve(example, tmp_path, database, smtp_sink.port, redis_server.url) as served:
        clients = [httpx.Client(base_url=served.base, timeout=60) for _ in passwords]
        link = f"/reset/{token}"
        csrfs = [_form(client, link) for client in clients]  # every one verified the link

        def complete(n: int) -> Callable[[], httpx.Response]:
            fields = {"csrf": csrfs[n], "password": passwords[n], "confirm": passwords[n]}
            return lambda: clients[n].post(link, data=fields)

        replies = _all_at_once([complete(n) for n in range(RACERS)])
        flashes = [
            _flash_after(client, reply) for client, reply in zip(clients, replies, strict=True)
        ]
        notices = smtp_sink.wait_for(1)
        _no_more_mail(smtp_sink, 1)
        for client in clients:
            client.close()

    won = [n for n, text in enumerate(flashes) if "Your password was changed" in text]
    stale = [n for n, text in enumerate(flashes) if "already used" in text]
    assert 1 == len(won), (flashes, served.log_text())
    assert RACERS - 1 == len(stale), flashes
    stored = users.find_by_email(EMAIL)
    assert stored is not None
    assert check_password(stored.password_hash, passwords[won[0]])
    assert [(EMAIL,)] == [notice.envelope_to for notice in notices]  # one password_changed


@pytest.mark.parametrize(
    ("example", "preload"), [("flask", False), ("flask", True), ("bottle", False)]
)
def test_limits_hold_across_workers_and_ignore_a_forged_forwarded_for(
    example: str,
    preload: bool,
    tmp_path: Path,
    redis_server: RedisServer,
    smtp_sink: SMTPSink,
) -> None:
    """6 requests for one address spread over 4 workers send 3 mails (per_address=3, not 3
    per worker); then 8 requests for 8 other users, each with its own forged
    X-Forwarded-For, send only the 4 the client's limit has left (per_client=10): the
    client is the connection, whatever the header says."""
    others = [f"user{n}@example.org" for n in range(8)]
    database, _ = _users(tmp_path, EMAIL, *others)

    with serve(
        example, tmp_path, database, smtp_sink.port, redis_server.url, preload=preload
    ) as served:

        def forgot(email: str, headers: dict[str, str]) -> Callable[[], httpx.Response]:
            client = httpx.Client(base_url=served.base, timeout=60, headers=headers)
            csrf = _form(client, "/forgot")

            def post() -> httpx.Response:
                try:
                    return client.post("/forgot", data={"csrf": csrf, "email": email})
                finally:
                    client.close()

            return post

        same_address = _all_at_once([forgot(EMAIL, {}) for _ in range(6)])
        first = smtp_sink.wait_for(3, timeout=30)
        _no_more_mail(smtp_sink, 3)
        forged = _all_at_once(
            [
                forgot(email, {"X-Forwarded-For": f"198.51.100.{n + 1}"})
                for n, email in enumerate(others)
            ]
        )
        arrived = smtp_sink.wait_for(7, timeout=30)
        _no_more_mail(smtp_sink, 7)
        log = served.log_text()

    assert all(reply.status_code in {302, 303} for reply in same_address + forged)
    assert [(EMAIL,)] * 3 == [message.envelope_to for message in first], log
    later = [message.envelope_to[0] for message in arrived[3:]]
    assert 4 == len(set(later)), log
    assert set(later) <= set(others)
