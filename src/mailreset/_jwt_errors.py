"""The one place where PyJWT's exceptions become mailreset's token errors.

``TokenService`` hands untrusted token text to PyJWT only inside ``try: ... except
JWT_ERRORS as exc: raise invalid_token(exc) from exc``, so a caller of ``TokenService.verify``
only ever sees :class:`~mailreset.errors.InvalidToken` or one of its subclasses, with the
original exception chained for diagnostics. Expiry never comes from here: PyJWT checks only the
JWS (header, algorithm, signature) and ``verify`` reads the claims, times included, itself.
"""

from __future__ import annotations

import jwt

from mailreset.errors import InvalidToken

__all__ = ["JWT_ERRORS", "invalid_token"]

#: What PyJWS.decode and jwt.get_unverified_header raise on hostile input: a PyJWTError for
#: everything they check, and, before PyJWT 2.10, a RecursionError from too deeply nested
#: JSON in the header or payload (later versions turn that into a DecodeError too).
JWT_ERRORS = (jwt.PyJWTError, RecursionError)


def invalid_token(error: BaseException) -> InvalidToken:
    """The :class:`InvalidToken` that reports PyJWT's refusal ``error`` (raise it ``from`` it).

    An ``except`` clause rather than a context manager: entering and leaving one costs a
    measurable part of ``verify`` on its hot path, a ``try`` costs nothing until it catches.
    """
    return InvalidToken(f"not a valid token: {error}", original_error=error)
