"""``email.policy.default`` with a memory: the same header is parsed and folded only once.

Profiling ``MessageBuilder.build`` + ``as_bytes()`` shows the email package's header machinery
dominating: every header value is parsed into a parse tree when it is set and re-folded from
that tree when the message is serialised, and ``HeaderRegistry`` even builds a new class for
every header it makes. Most headers of a builder's messages repeat (From, Reply-To, the
subject of a template, MIME-Version, Content-Type and Content-Transfer-Encoding of every part),
so this policy keeps the header objects it made, by name and value, and each header object
keeps the lines it folded to, per folding setting.

That is safe because header objects are immutable: the email package replaces a header
(``set_param``, ``replace_header``) rather than changing one.

Address headers given as :class:`CheckedAddresses` (addresses ``_headers`` already validated)
skip the parser when they are made; the parse tree is built only if folding needs it. A
short ASCII header of plain names (letters and digits between single spaces) folds to itself,
so it is written as is. The output is byte for byte what ``email.policy.default`` produces
(tested against it, hypothesis included).
"""

from __future__ import annotations

import re
from email.headerregistry import Address, BaseHeader, Group, HeaderRegistry, UniqueAddressHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.policy import default as default_policy
from typing import Any

__all__ = ["CheckedAddresses", "caching_policy"]

_CACHE_SIZE = 2048
_PLAIN_NAME = re.compile(r"(?:[A-Za-z0-9]+(?: [A-Za-z0-9]+)*)?\Z")


class CheckedAddresses(tuple[Address, ...]):
    """Addresses that passed ``_headers.parse_address``: safe to skip the email parser."""

    __slots__ = ()

    @property
    def plain(self) -> bool:
        """True when every display name is plain ASCII words (folds to itself when short)."""
        return all(_PLAIN_NAME.match(address.display_name) for address in self)


class LazyAddressHeader(UniqueAddressHeader):
    """An address header that parses its value only when folding needs the parse tree."""

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        if not isinstance(value, CheckedAddresses):
            super().parse(value, kwds)
            return
        kwds["groups"] = [Group(None, [address]) for address in value]
        kwds["defects"] = []
        kwds["decoded"] = ", ".join(map(str, value))
        kwds["parse_tree"] = None
        kwds["_mailreset_plain"] = value.plain

    def init(self, *args: Any, **kw: Any) -> None:
        self._mailreset_plain = kw.pop("_mailreset_plain", False)
        super().init(*args, **kw)


class MemoFoldHeader(BaseHeader):
    """The last base of every header class the caching registry makes: ``fold`` remembers."""

    def fold(self, *, policy: Any) -> str:
        key = (policy.linesep, policy.max_line_length, policy.utf8, policy.refold_source)
        folds: dict[tuple[Any, ...], str] | None = self.__dict__.get("_mailreset_folds")
        if folds is None:
            folds = self.__dict__["_mailreset_folds"] = {}
        folded = folds.get(key)
        if folded is None:
            folded = folds[key] = self._fold_once(policy)
        return folded

    def _fold_once(self, policy: Any) -> str:
        if self.__dict__.get("_parse_tree", True) is None:  # a LazyAddressHeader
            line = f"{self.name}: {self}"
            limit = policy.max_line_length or len(line)
            if self.__dict__.get("_mailreset_plain") and line.isascii() and len(line) <= limit:
                return line + str(policy.linesep)
            self._parse_tree = self.value_parser(str(self))  # type: ignore[attr-defined]
        return super().fold(policy=policy)


class CachingHeaderRegistry(HeaderRegistry):
    """A ``HeaderRegistry`` that reuses header classes and, for string values, headers."""

    def __init__(self) -> None:
        super().__init__(base_class=MemoFoldHeader)
        self._classes: dict[str, type[BaseHeader]] = {}
        self._headers: dict[tuple[str, str], BaseHeader] = {}
        for name in ("from", "to", "cc", "bcc", "reply-to"):
            self.map_to_type(name, LazyAddressHeader)

    def __reduce__(self) -> tuple[type[CachingHeaderRegistry], tuple[()]]:
        # Pickling or deep-copying a message copies its policy: carry a fresh, empty registry
        # (the caches hold dynamically made classes that cannot be pickled anyway).
        return (CachingHeaderRegistry, ())

    def map_to_type(self, name: str, cls: type) -> None:
        """Register ``cls`` for ``name`` (and forget what was made with the old class)."""
        super().map_to_type(name, cls)
        self._classes.clear()
        self._headers.clear()

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if type(value) is not str:
            return self[name](name, value)
        key = (name, value)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) >= _CACHE_SIZE:
                self._headers.clear()  # bounded: distinct To headers must not pile up
            header = self._headers[key] = self[name](name, value)
        return header


def caching_policy() -> EmailPolicy[EmailMessage]:
    """``email.policy.default`` with its own caching header registry."""
    return default_policy.clone(header_factory=CachingHeaderRegistry())
