"""Password policy for a completed reset: the PasswordPolicy protocol and a NIST one.

Public through :mod:`mailreset.reset`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from typing import Protocol, runtime_checkable

import attrs

from mailreset._convert import is_whole, positive_int
from mailreset._users import normalize_email
from mailreset.errors import ConfigurationError, WeakPassword


@runtime_checkable
class PasswordPolicy(Protocol):
    """**Protocol:** checks a new password; a plain function with this signature will do.

    It raises :class:`~mailreset.errors.WeakPassword` with every reason, or returns None.

    .. versionadded:: 0.1
    """

    def __call__(self, password: str, *, email: str) -> None:
        """Refuse ``password`` for the user whose stored address is ``email``, or return."""
        ...


_COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "12345678",
        "123456789",
        "1234567890",
        "123123123",
        "11111111",
        "00000000",
        "qwerty123",
        "qwertyuiop",
        "1q2w3e4r",
        "1qaz2wsx",
        "abc12345",
        "iloveyou",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome1",
        "letmein1",
        "passw0rd",
        "trustno1",
        "superman",
        "starwars",
        "zaq12wsx",
        "asdfghjkl",
        "changeme",
    }
)


def _plain(password: str) -> str:
    """The form blocklists compare: NFKC, case-folded, outer space stripped, inner runs of
    white space as one space (``"Password "`` and ``" pass  word"`` are that password)."""
    return " ".join(unicodedata.normalize("NFKC", password).casefold().split())


def _casefolded(values: Collection[str]) -> frozenset[str]:
    return frozenset(_plain(value) for value in values)


@attrs.frozen(kw_only=True)
class NISTPasswordPolicy:
    """The default policy, after NIST SP 800-63B section 5.1.1.2.

    At least ``min_length`` characters (Unicode code points after NFKC, spaces count), at
    most ``max_length`` (at least 64 must be allowed), no composition rules, not one of the
    ``blocklist`` (compared case-insensitively, ignoring white space around and inside it:
    ``"password "`` is ``"password"``), not a single repeated character, and not the user's
    address or its local part.

    Attributes:
        min_length: the fewest characters accepted.
        max_length: the most characters accepted (bounds the cost of hashing).
        blocklist: passwords refused outright, compared case-insensitively.

    .. versionadded:: 0.1
    """

    min_length: int = attrs.field(default=8, validator=positive_int)
    max_length: int = 256
    blocklist: frozenset[str] = attrs.field(default=_COMMON_PASSWORDS, converter=_casefolded)

    def __attrs_post_init__(self) -> None:
        if not is_whole(self.max_length):
            raise ConfigurationError(
                f"NISTPasswordPolicy.max_length must be a whole number, not {self.max_length!r}"
            )
        if self.max_length < max(64, self.min_length):
            raise ConfigurationError(
                "NISTPasswordPolicy.max_length must allow at least 64 characters "
                f"(and min_length), not {self.max_length!r}"
            )

    def __call__(self, password: str, *, email: str) -> None:
        """Raise :class:`~mailreset.errors.WeakPassword` with every reason, or return."""
        if not isinstance(password, str):
            raise WeakPassword("the password must be text")
        reasons = []
        normalised = unicodedata.normalize("NFKC", password)
        if len(normalised) < self.min_length:
            reasons.append(f"use at least {self.min_length} characters")
        elif len(normalised) > self.max_length:
            reasons.append(f"use at most {self.max_length} characters")
        folded = normalised.casefold()
        plain = _plain(password)
        if plain in self.blocklist or plain.replace(" ", "") in self.blocklist:
            reasons.append("this password is too common: choose another")
        elif len(set(plain)) == 1 and len(plain) > 1:
            reasons.append("do not repeat a single character")
        address = normalize_email(email) if isinstance(email, str) else ""
        if address and folded.strip() in {address, address.partition("@")[0]}:
            reasons.append("do not use your email address as your password")
        if reasons:
            message = "; ".join(reasons)
            raise WeakPassword(message[:1].upper() + message[1:], reasons=reasons)
