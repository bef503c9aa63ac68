"""Redaction for log lines and reprs: reset links and tokens never reach a log."""

from __future__ import annotations

import re

# Everything after the host of a URL: reset tokens live in paths and query strings.
_URL_TAIL = re.compile(r"(https?://[^\s/?#\"'<>]+)[/?#][^\s\"'<>]*")
# A JWT (three base64url parts) or any long token-looking run outside a URL.
_TOKEN = re.compile(r"\b(?:eyJ[\w-]+\.[\w-]+\.[\w-]+|[A-Za-z0-9_-]{32,})\b")


def redact(text: str) -> str:
    """``text`` with URL paths and token-looking strings replaced by ``[redacted]``."""
    return _TOKEN.sub("[redacted]", _URL_TAIL.sub(r"\1/[redacted]", text))
