"""The one place where PyJWT's exceptions become mailreset's token errors.

Everything that parses untrusted token bytes runs inside :func:`map_jwt_errors`, so a caller of
``TokenService.verify`` only ever sees :class:`~mailreset.errors.InvalidToken` or one of its
subclasses, with the original exception chained (``raise ... from exc``) for diagnostics.
"""

from __future__ import annotations

import binascii
from datetime import datetime
from types import TracebackType

import jwt

from mailreset.errors import ExpiredToken, InvalidToken, MailresetError

# What the standard library raises on malformed input while a token is taken apart:
# bad base64 (binascii.Error is a ValueError), bad JSON (ValueError), too deeply nested JSON
# (RecursionError), JSON numbers past the int-digits limit (ValueError), bytes that are not
# text (UnicodeError), and out-of-range dates (OverflowError, OSError on some platforms).
_MALFORMED = (
    binascii.Error,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    RecursionError,
    OverflowError,
    OSError,
)


class map_jwt_errors:  # lower case: used like a function, as contextlib managers are
    """Translate PyJWT's and the parser's exceptions into mailreset's token errors.

    ``with map_jwt_errors(): ...`` turns ``ExpiredSignatureError`` into :class:`ExpiredToken`
    (carrying ``expired_at`` when the caller knows it), every other ``PyJWTError`` and any
    malformed-input error into :class:`InvalidToken`, and lets our own errors through. A class
    rather than ``@contextmanager``: the generator version costs more than the whole JSON
    decoding it guards on the hot path of ``verify``.
    """

    __slots__ = ("expired_at",)

    def __init__(self, *, expired_at: datetime | None = None) -> None:
        self.expired_at = expired_at

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None or isinstance(error, MailresetError):
            return
        if isinstance(error, jwt.ExpiredSignatureError):
            raise ExpiredToken(
                "the token has expired", expired_at=self.expired_at, original_error=error
            ) from error
        if isinstance(error, jwt.PyJWTError):
            raise InvalidToken(f"not a valid token: {error}", original_error=error) from error
        if isinstance(error, _MALFORMED):
            raise InvalidToken(
                f"not a valid token: {type(error).__name__}", original_error=error
            ) from error
