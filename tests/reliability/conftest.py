"""Fixtures of the reliability tests: Postfix instances of their own, started and removed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser_support import in_ci
from tests.postfix_support import Postfix, unavailable_reason


@pytest.fixture
def make_postfix() -> Iterator[Callable[..., Postfix]]:
    """Start a Postfix of the test's own (options: see Postfix); every one is removed after."""
    reason = unavailable_reason()
    if reason is not None:
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    started: list[Postfix] = []

    def make(**options: Any) -> Postfix:
        server = Postfix(**options)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.remove()


@pytest.fixture
def postfix(make_postfix: Callable[..., Postfix]) -> Postfix:
    """A running Postfix with STARTTLS, implicit TLS on a second port and AUTH (sasldb)."""
    return make_postfix()
