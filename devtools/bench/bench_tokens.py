"""TokenService issue+verify against bare PyJWT and, when installed, Django's reset tokens.

Ours does the whole job of a reset link: a purpose, a bound password hash, a kid header, the
strict checks on verify and a ``Claims`` object. The PyJWT anchor is the tutorial's token,
``jwt.encode({"reset_password": user_id, "exp": time() + 600}, key, algorithm="HS256")`` and
its ``jwt.decode``. Django's ``PasswordResetTokenGenerator`` (``make_token`` + ``check_token``)
is the stretch anchor: the same single-use idea without JWT.

A note on the first line gives bare PyJWT's rate for a token shaped like ours (the ``kid``
header and our claims, no checks of ours): the part of the ratio that is PyJWT's work on a
longer token, apart from what purpose, bind and ``Claims`` cost.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import jwt

from devtools.bench.harness import (
    Comparison,
    Options,
    configure_django,
    interleaved_medians,
    rate,
)
from mailreset import TokenService

KEY = "bench-secret-key-with-enough-entropy-0123456789"
USER_ID = 42
PASSWORD_HASH = "pbkdf2_sha256$870000$abcdefghijklmnop$0123456789abcdefghijklmnopqrstuvwxyzABCDEF"


def _ours() -> Any:
    service = TokenService(KEY)

    def once() -> None:
        token = service.issue("reset_password", USER_ID, bind=PASSWORD_HASH)
        service.verify(token, "reset_password", bind=PASSWORD_HASH)

    return once


def _bare_pyjwt() -> Any:
    def once() -> None:
        token = jwt.encode(
            {"reset_password": USER_ID, "exp": time.time() + 600}, KEY, algorithm="HS256"
        )
        jwt.decode(token, KEY, algorithms=["HS256"])

    return once


def _pyjwt_our_shape() -> Any:
    """PyJWT encode+decode of a token with our header and claims, and nothing of ours."""
    kid = jwt.get_unverified_header(TokenService(KEY).issue("p", 1))["kid"]

    def once() -> None:
        now = int(time.time())
        claims = {"sub": str(USER_ID), "iat": now, "exp": now + 600, "pur": "reset_password"}
        claims["bnd"] = "A" * 16  # the length of our state digest
        token = jwt.encode(claims, KEY, algorithm="HS256", headers={"kid": kid, "typ": None})
        jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_iat": False})

    return once


def _django() -> Any | None:
    """Django's generator, or None when Django is not installed."""
    if configure_django() is None:
        return None
    from django.contrib.auth.tokens import PasswordResetTokenGenerator

    class User:
        pk = USER_ID
        password = PASSWORD_HASH
        last_login = datetime(2030, 1, 1, tzinfo=timezone.utc)
        email = "ada@example.test"

        @classmethod
        def get_email_field_name(cls) -> str:
            return "email"

    generator = PasswordResetTokenGenerator()
    generator.secret = KEY  # the same key as ours, not the settings-wide one
    user = User()

    def once() -> None:
        token = generator.make_token(user)
        if not generator.check_token(user, token):
            raise AssertionError("Django refused its own token")

    return once


def run(options: Options) -> list[Comparison]:
    """Issue+verify rates, interleaved, against each anchor."""
    count = 2_000 if options.quick else 20_000
    operations = {"ours": _ours(), "pyjwt": _bare_pyjwt(), "pyjwt_our_shape": _pyjwt_our_shape()}
    django = _django()
    if django is not None:
        operations["django"] = django
    candidates = {name: (lambda op=op: rate(op, count)) for name, op in operations.items()}
    medians = interleaved_medians(candidates, options.rounds)

    comparisons = [
        Comparison(
            name="TokenService issue+verify (purpose, bind)",
            ours=medians["ours"],
            anchor=medians["pyjwt"],
            anchor_name="bare PyJWT encode+decode (tutorial payload)",
            unit="tokens/s",
            target=0.8,
            notes=[
                f"bare PyJWT on a token of our shape (kid header, our claims): "
                f"{medians['pyjwt_our_shape']:.0f} tokens/s, "
                f"{medians['pyjwt_our_shape'] / medians['pyjwt']:.2f}x the anchor"
            ],
        )
    ]
    if django is not None:
        comparisons.append(
            Comparison(
                name="TokenService issue+verify, stretch",
                ours=medians["ours"],
                anchor=medians["django"],
                anchor_name="Django PasswordResetTokenGenerator make+check",
                unit="tokens/s",
                target=1.0,
            )
        )
    return comparisons
