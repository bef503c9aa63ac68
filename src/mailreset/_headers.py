"""Header and address checks, done before any message is built.

Every value that ends up in a header passes through here first, so that a line break smuggled
into a subject, a display name, an address or a custom header (header injection) raises
:class:`~mailreset.errors.InvalidMessage` instead of adding headers or recipients. The email
package would refuse some of these too, but only with a bare ``ValueError`` and only once the
header is set; and it accepts line breaks other than CR and LF that ``str.splitlines`` honours.

Addresses are checked by :mod:`mailreset._addresses` (the one address check): ``local@domain``
with a dot-atom local part (non-ASCII allowed: RFC 6531) and a host name domain (a Unicode
domain becomes its IDNA 2008 A-labels), optionally with a display name as
``Name <local@domain>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.headerregistry import Address

from mailreset._addresses import split_address
from mailreset.errors import InvalidMessage

__all__ = [
    "AddressInput",
    "check_header_name",
    "check_header_value",
    "parse_address",
    "parse_addresses",
]

#: What callers may pass where an address is expected.
AddressInput = str | Address

# NUL, every C0 control but TAB, DEL, and everything str.splitlines() treats as a line break
# (CR, LF, VT, FF, FS, GS, RS, NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR).
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_NAME_ADDR = re.compile(r"(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*\Z", re.DOTALL)
# RFC 5322 field names: printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")


def _describe(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def check_header_value(value: object, what: str) -> str:
    """``value`` as a string safe for one header line, or :class:`InvalidMessage`."""
    if not isinstance(value, str):
        raise InvalidMessage(f"{what} must be a string, not {type(value).__name__}")
    found = _FORBIDDEN.search(value)
    if found is not None:
        raise InvalidMessage(
            f"{what} contains a forbidden character {found.group()!r} "
            f"(line breaks, NUL and control characters would allow header injection): "
            f"{_describe(value)}"
        )
    return value


def check_header_name(name: object) -> str:
    """``name`` as a valid header field name, or :class:`InvalidMessage`."""
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        raise InvalidMessage(
            f"header name {name!r} is not a valid field name (printable ASCII without ':')"
        )
    return name


def parse_address(value: object, what: str = "address") -> Address:
    """One address (``"a@b.example"``, ``"Name <a@b.example>"`` or an ``Address``), checked.

    ``what`` names the argument in error messages (``"to"``, ``"sender"``, ...).
    """
    if isinstance(value, Address):
        name = check_header_value(value.display_name, f"{what} display name")
        addr = check_header_value(value.addr_spec, what)
    elif isinstance(value, str):
        check_header_value(value, what)
        match = _NAME_ADDR.match(value)
        if match is None:
            name, addr = "", value.strip()
        else:
            name, addr = match.group("name").strip(), match.group("addr").strip()
            if len(name) >= 2 and name[0] == name[-1] == '"':
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    else:
        raise InvalidMessage(
            f"{what} must be a string or an email.headerregistry.Address, "
            f"not {type(value).__name__}"
        )
    if not addr:
        raise InvalidMessage(f"{what} is empty")
    if "<" in name or ">" in name:
        raise InvalidMessage(f"{what} {value!r} has angle brackets in its display name")
    local, domain = split_address(addr, what)
    return Address(display_name=name, username=local, domain=domain)


def parse_addresses(values: AddressInput | Iterable[AddressInput], what: str) -> list[Address]:
    """One address or an iterable of them, each checked; a single string is one address.

    A comma-separated string is refused rather than split: commas may appear in display
    names, and guessing would let one argument turn into several recipients.
    """
    if isinstance(values, (str, Address)):
        values = (values,)
    elif not isinstance(values, Iterable):
        raise InvalidMessage(
            f"{what} must be an address or an iterable of addresses, not {type(values).__name__}"
        )
    return [parse_address(value, what) for value in values]
