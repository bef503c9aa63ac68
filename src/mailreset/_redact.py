"""Safe log text: reset links and tokens never reach a log, nor an outsider's control chars."""

from __future__ import annotations

import re
import traceback
import unicodedata

# Everything after the host of a URL: reset tokens live in paths and query strings.
_URL_TAIL = re.compile(r"(https?://[^\s/?#\"'<>]+)[/?#][^\s\"'<>]*")
# A JWT (three base64url parts) or any long token-looking run outside a URL.
_TOKEN = re.compile(r"\b(?:eyJ[\w-]+\.[\w-]+\.[\w-]+|[A-Za-z0-9_-]{32,})\b")
# Candidates for escaping: the backslash (so an escape in the input cannot pass for ours) and
# everything outside printable ASCII; which of those are escaped is decided per character.
_SUSPECT = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
# Control, format (bidi overrides, zero-width), surrogate, private-use and unassigned
# characters, and the Unicode line and paragraph separators: none may reach a log line.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: The longest outsider value a log line carries (a flood of megabytes stays out of logs).
MAX_LOGGED = 200
_SHORT = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def redact(text: str) -> str:
    """``text`` with URL paths and token-looking strings replaced by ``[redacted]``."""
    return _TOKEN.sub("[redacted]", _URL_TAIL.sub(r"\1/[redacted]", text))


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as one line of plain text for a log: control characters (CR, LF, ESC,
    bidi overrides, U+2028, ...) as ``\\r``, ``\\n``, ``\\xNN`` or ``\\uNNNN`` escapes,
    backslashes doubled, cut at ``limit`` characters (with ``...``)."""
    text = str(value)
    cut = len(text) > limit
    escaped = _SUSPECT.sub(_escape_one, text[:limit] if cut else text)
    return escaped + "..." if cut else escaped


def safe(text: object) -> str:
    """``text`` redacted (:func:`redact`) and escaped (:func:`escape`) for a log line."""
    return escape(redact(str(text)), limit=4 * MAX_LOGGED)


def describe(error: BaseException) -> str:
    """One safe line about ``error``: its type, redacted and escaped message, and where.

    Stands in for a traceback in log lines that may concern a token: a traceback repeats the
    exception's message (which may hold a link) and cannot be redacted once handed to logging.
    """
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    where = " <- ".join(
        f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
        for frame in reversed(frames)
    )
    text = f"{type(error).__name__}: {safe(error)}"
    return f"{text} (at {where})" if where else text
