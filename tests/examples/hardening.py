"""What the Flask and Bottle hardening tests share: cases, and a limiter that records keys."""

from __future__ import annotations

import re
from typing import Any

#: Non-ASCII CSRF field values: a wrong token (400), never a server error.
NON_ASCII_CSRF = ["é" * 43, "\u2028", "ключ"]

#: (settings, whether the session cookie is Secure), the client over HTTPS.
SECURE_COOKIE_CASES: list[tuple[dict[str, Any], bool]] = [
    ({}, True),  # MAILRESET_URL is https://: served over HTTPS
    ({"MAILRESET_URL": "http://127.0.0.1:8080/reset/{token}"}, False),
    ({"MAILRESET_URL": "http://127.0.0.1:8080/reset/{token}", "HTTPS": True}, True),
    ({"HTTPS": False}, False),
]

#: The connection's address in the client-key cases.
REMOTE_ADDR = "192.0.2.10"
#: (PROXY_HOPS, X-Forwarded-For sent, the client key the flow must see).
CLIENT_KEY_CASES = [
    (0, "198.51.100.7", REMOTE_ADDR),  # no proxy: the header is the client's to forge
    (1, "198.51.100.66, 198.51.100.7", "198.51.100.7"),  # the entry our proxy wrote
    (2, "198.51.100.66, 198.51.100.7", "198.51.100.66"),
    (2, "198.51.100.7", REMOTE_ADDR),  # fewer entries than proxies: not through them
]

_FLASH = re.compile(r'class="flash[^"]*" role="status">([^<]*)<')


def flashes(page: str) -> str:
    """The flashed messages of a page, joined."""
    return " | ".join(_FLASH.findall(page))


class RecordingLimiter:
    """Allows everything and records the keys it was asked about."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def allow(self, kind: str, key: str) -> bool:
        """Record ``(kind, key)``; always True."""
        self.keys.append((kind, key))
        return True
