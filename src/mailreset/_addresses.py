"""The one check of an e-mail address, used by the builder, the envelope and the reset flow.

An address is ``local@domain``, held to a strict, deliberately small syntax:

- the local part is a dot-atom (RFC 5322 ``atext`` with single dots between), at most 64
  octets; non-ASCII letters are allowed in it (RFC 6531, "EAI": ``用户@example.test``), and
  such an address needs the SMTPUTF8 extension of the servers on its way (the envelope says
  so, and the transport uses it or refuses with a ``PermanentFailure`` naming it);
- the domain is a host name: ASCII labels of letters, digits and hyphens, or Unicode labels,
  which become their A-labels (``bücher.example`` -> ``xn--bcher-kva.example``) by IDNA 2008
  with the UTS 46 mapping (the ``idna`` package; the stdlib codec is IDNA 2003, which maps
  ``faß`` to ``fass`` and accepts ``☃``). An ASCII domain needs no SMTPUTF8, so a Unicode
  domain alone never does.

Quoted local parts, comments, groups and domain literals are refused: a password-reset mail
has no use for them and each one is a place where parsers disagree. Everything refused is an
:class:`~mailreset.errors.InvalidMessage` that says why.
"""

from __future__ import annotations

import re
import unicodedata

from mailreset.errors import InvalidMessage

__all__ = ["canonical_address", "is_address", "split_address"]

_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
# A non-ASCII character is atext when it is a letter, mark, number, punctuation or symbol:
# never a control, format character, surrogate, private use or space (categories C and Z).
_ASCII_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
_LOCAL_CHARS = re.compile(rf"[.{_ATEXT}]")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1, octets
_MAX_DOMAIN = 253  # RFC 1035 as written in dotted form
_MAX_ADDRESS = 254  # RFC 5321's 256-octet path minus its angle brackets


def _describe(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def _check_local(local: str, address: str, what: str) -> None:
    if local.isascii():
        valid = _ASCII_DOT_ATOM.match(local) is not None
    else:
        valid = all(atom for atom in local.split(".")) and all(
            _LOCAL_CHARS.match(char) is not None
            if char.isascii()
            else unicodedata.category(char)[0] not in "CZ"
            for char in local
        )
    # Valid means no lone surrogate, so the encoding cannot fail.
    if not valid or len(local.encode("utf-8")) > _MAX_LOCAL:
        raise InvalidMessage(
            f"{what} {_describe(address)} has an invalid local part (letters, digits, "
            "!#$%&'*+/=?^_`{|}~- and single dots between them; at most 64 octets)"
        )


def _ascii_domain(domain: str, address: str, what: str) -> str:
    if not domain.isascii() or "xn--" in domain.lower():
        # Loaded on first use: the tables cost a few milliseconds that ASCII-only apps skip.
        import idna

        try:
            if domain.isascii():  # A-labels must decode, or the domain is not what it says
                idna.decode(domain)
            else:
                domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as error:
            raise InvalidMessage(
                f"{what} {_describe(address)} has a domain that is not a valid internationalised"
                f" host name (IDNA 2008): {error}"
            ) from error
    if len(domain) > _MAX_DOMAIN or not all(_LABEL.match(label) for label in domain.split(".")):
        raise InvalidMessage(
            f"{what} {_describe(address)} has an invalid domain (host name labels of letters, "
            "digits and hyphens, separated by single dots)"
        )
    return domain


def split_address(address: object, what: str = "address") -> tuple[str, str]:
    """``(local part, ASCII domain)`` of a valid addr-spec, or :class:`InvalidMessage`.

    ``what`` names the argument in error messages (``"to"``, ``"sender"``, ...). The domain
    comes back in its A-label form; the local part as given.
    """
    if not isinstance(address, str):
        raise InvalidMessage(f"{what} must be a string address, not {type(address).__name__}")
    if "," in address or ";" in address:
        raise InvalidMessage(
            f"{what} {_describe(address)} looks like several addresses: pass them as a list, "
            "one per item"
        )
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidMessage(
            f"{what} {_describe(address)} is not an email address (expected local@domain)"
        )
    _check_local(local, address, what)
    domain = _ascii_domain(domain, address, what)
    if len(local.encode("utf-8")) + 1 + len(domain) > _MAX_ADDRESS:
        raise InvalidMessage(f"{what} {_describe(address)} is longer than 254 octets")
    return local, domain


def canonical_address(address: object, what: str = "address") -> str:
    """The addr-spec as it goes into headers and the envelope: its domain in A-labels."""
    local, domain = split_address(address, what)
    return f"{local}@{domain}"


def is_address(address: object) -> bool:
    """True when :func:`split_address` accepts ``address``."""
    try:
        split_address(address)
    except InvalidMessage:
        return False
    return True
