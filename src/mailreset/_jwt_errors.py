"""The one place where PyJWT's exceptions become mailreset's token errors.

Everything that parses untrusted token bytes runs inside :func:`map_jwt_errors`, so a caller of
``TokenService.verify`` only ever sees :class:`~mailreset.errors.InvalidToken` or one of its
subclasses, with the original exception chained (``raise ... from exc``) for diagnostics.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import jwt

from mailreset.errors import ExpiredToken, InvalidToken, MailresetError

# What the standard library raises on malformed input while a token is taken apart:
# bad base64 (binascii.Error is a ValueError), bad JSON (ValueError), too deeply nested JSON
# (RecursionError), JSON numbers past the int-digits limit (ValueError), bytes that are not
# text (UnicodeError), and out-of-range dates (OverflowError, OSError on some platforms).
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError, OSError)


@contextmanager
def map_jwt_errors(*, expired_at: datetime | None = None) -> Iterator[None]:
    """Translate PyJWT's and the parser's exceptions into mailreset's token errors.

    ``ExpiredSignatureError`` becomes :class:`ExpiredToken` (carrying ``expired_at`` when the
    caller knows it), every other ``PyJWTError`` and any malformed-input error becomes
    :class:`InvalidToken`. Our own errors pass through untouched.
    """
    try:
        yield
    except MailresetError:
        raise
    except jwt.ExpiredSignatureError as exc:
        raise ExpiredToken(
            "the token has expired", expired_at=expired_at, original_error=exc
        ) from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"not a valid token: {exc}", original_error=exc) from exc
    except (binascii.Error, *_MALFORMED) as exc:
        raise InvalidToken(f"not a valid token: {type(exc).__name__}", original_error=exc) from exc
