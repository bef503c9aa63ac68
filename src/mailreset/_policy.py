"""``email.policy.default`` made light and with a memory, for the builder's messages.

Two costs of the email package's header objects matter here.

* **Time.** Every header value is parsed into a parse tree when it is set and re-folded from
  that tree when the message is serialised, and ``HeaderRegistry`` even builds a new class for
  every header it makes. Most headers of a builder's messages repeat (From, Reply-To, the
  subject of a template, MIME-Version, Content-Type and Content-Transfer-Encoding of every
  part), so this policy keeps the header objects it made from strings, by name and value, and
  each of those keeps the lines it folded to, per folding setting.
* **Memory.** A parse tree is dozens of small objects: ~7 KB for a Date header whose value is
  31 characters. A :class:`~mailreset.mailers.ThreadedMailer` queues message objects, so a
  queued message would cost several times its size on the wire. Headers made here drop their
  parse tree once it has given them their attributes (``addresses``, ``params``, ``datetime``,
  ...) and parse their value again only when folding needs a tree; a header that fits on one
  line as plain ASCII (nearly all) is written as it is, without any tree.

Both are safe because header objects are immutable (the email package replaces a header
rather than changing one) and because a tree is only dropped when it can be made again: for
the stdlib's own header classes, from the value they were given, and never for a header with
defects (an invalid Date keeps its empty tree, as the stdlib made it). To the rest of the
email package, ``_parse_tree`` still reads as before (a property that rebuilds it).

Address headers given as :class:`CheckedAddresses` (addresses ``_headers`` already validated)
skip the parser altogether when they are made. The output is byte for byte what
``email.policy.default`` produces (tested against it, hypothesis included).

All of this leans on how the email package builds its header objects inside (``__new__``,
instance dicts, the registry's generated classes), which no Python release promises to keep.
So the builder gets it only through :func:`caching_policy`, which first checks, once per
process, that representative messages made with it serialise and read back exactly as with
``email.policy.default``, and hands out ``email.policy.default`` itself when they do not.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from email.headerregistry import (
    Address,
    AddressHeader,
    BaseHeader,
    ContentDispositionHeader,
    ContentTransferEncodingHeader,
    ContentTypeHeader,
    DateHeader,
    Group,
    HeaderRegistry,
    MessageIDHeader,
    MIMEVersionHeader,
    SingleAddressHeader,
    UniqueAddressHeader,
    UniqueDateHeader,
    UniqueSingleAddressHeader,
    UniqueUnstructuredHeader,
    UnstructuredHeader,
)
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Any

__all__ = [
    "CheckedAddresses",
    "CheckedMessageID",
    "caching_policy",
    "faithful",
    "make_caching_policy",
]

log = logging.getLogger("mailreset")

_CACHE_SIZE = 2048
#: Headers whose values are (nearly) always new: caching them would only evict useful ones.
_UNCACHED = frozenset({"message-id", "date", "resent-message-id", "resent-date"})


class CheckedAddresses(tuple[Address, ...]):
    """Addresses that passed ``_headers.parse_address``: safe to skip the email parser."""

    __slots__ = ()


class LazyAddressHeader(UniqueAddressHeader):
    """An address header that parses its value only when folding needs the parse tree."""

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        if not isinstance(value, CheckedAddresses):
            super().parse(value, kwds)
            return
        kwds["groups"] = ()  # made from the addresses when asked for (see groups)
        kwds["addresses"] = tuple(value)
        kwds["defects"] = []
        kwds["decoded"] = ", ".join(map(str, value))
        kwds["parse_tree"] = None

    def init(self, *args: Any, **kw: Any) -> None:
        addresses = kw.pop("addresses", None)
        super().init(*args, **kw)
        if addresses is not None:
            self._addresses = addresses
            del self.__dict__["_groups"]

    @property
    def groups(self) -> tuple[Group, ...]:
        """One group without a name per address (as the stdlib makes them), or the parsed ones."""
        groups: tuple[Group, ...] | None = self.__dict__.get("_groups")
        if groups is None:
            groups = tuple(Group(None, [address]) for address in self.addresses)
        return groups


class CheckedMessageID(str):
    """A Message-ID made by ``email.utils.make_msgid`` from a checked domain: no parse needed."""

    __slots__ = ()


class LazyMessageIDHeader(MessageIDHeader):
    """A Message-ID header that skips the parser for a :class:`CheckedMessageID`."""

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        if not isinstance(value, CheckedMessageID):
            super().parse(value, kwds)
            return
        kwds["decoded"] = str(value)
        kwds["parse_tree"] = None


class LazyDateHeader(UniqueDateHeader):
    """A Date header that, made from a datetime, skips parsing the text it formats it to."""

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        if not isinstance(value, datetime):
            super().parse(value, kwds)
            return
        kwds["datetime"] = value
        kwds["decoded"] = format_datetime(value)
        kwds["parse_tree"] = None


#: The stdlib's header classes (and ours): their tree is ``value_parser`` of the value given
#: (of ``str(header)`` for a Date, or for a value that is not a string).
_REPARSABLE = frozenset(
    {
        UnstructuredHeader,
        UniqueUnstructuredHeader,
        DateHeader,
        UniqueDateHeader,
        AddressHeader,
        UniqueAddressHeader,
        SingleAddressHeader,
        UniqueSingleAddressHeader,
        LazyAddressHeader,
        LazyDateHeader,
        LazyMessageIDHeader,
        MIMEVersionHeader,
        ContentTypeHeader,
        ContentDispositionHeader,
        ContentTransferEncodingHeader,
        MessageIDHeader,
    }
)
_DROPPED = frozenset({"_parse_tree", "_defects"})


class LightHeader(BaseHeader):
    """The last base of every header class the caching registry makes.

    Its instances keep their value and attributes but not their parse tree, and fold
    without one when the header fits on a line as plain ASCII.
    """

    #: Read when an instance has none of its own: most headers have no defects.
    _defects: Any = ()

    def __new__(cls, name: str, value: Any) -> LightHeader:
        self: LightHeader = super().__new__(cls, name, value)
        state = self.__dict__
        made_by = cls.__bases__[0]  # the registered class (the registry adds us as last base)
        if made_by not in _REPARSABLE:
            return self  # someone's own header class: its tree may not be made again
        if state["_defects"]:
            state["_mailreset_keep"] = True  # exactly as the stdlib made it, defects and all
            return self
        if isinstance(value, str) and not issubclass(made_by, DateHeader):
            source: str | None = str(value)
        elif "\ufffd" in self:
            # Undecodable bytes were replaced in the value: the tree was made from the
            # original, which is gone. Keep it.
            state["_mailreset_keep"] = True
            return self
        else:
            source = None
        # A fresh dict, sized for what is left: no tree, no empty defects list.
        compact = {key: item for key, item in state.items() if key not in _DROPPED}
        if source is not None and source != self:
            compact["_mailreset_source"] = source
        self.__dict__ = compact
        return self

    @property
    def _parse_tree(self) -> Any:
        """The parse tree: kept, or made again from the value (and not kept)."""
        tree = self.__dict__.get("_parse_tree")
        if tree is None:
            source = self.__dict__.get("_mailreset_source")
            tree = self.value_parser(str(self) if source is None else source)  # type: ignore[attr-defined]
        return tree

    @_parse_tree.setter
    def _parse_tree(self, tree: Any) -> None:
        self.__dict__["_parse_tree"] = tree

    def fold(self, *, policy: Any) -> str:
        folds: dict[tuple[Any, ...], str] | None = self.__dict__.get("_mailreset_folds")
        if folds is None:  # a header of one message only: nothing to remember
            return self._fold_once(policy)
        key = (policy.linesep, policy.max_line_length, policy.utf8)
        folded = folds.get(key)
        if folded is None:
            folded = folds[key] = self._fold_once(policy)
        return folded

    def _fold_once(self, policy: Any) -> str:
        state = self.__dict__
        if "_mailreset_source" not in state and "_mailreset_keep" not in state and self:
            # The tree's text is the value itself; policy.default writes a tree that fits on
            # one line, is ASCII and holds no encoded word unchanged, after "Name: ".
            line = f"{self.name}: {self}"
            limit = policy.max_line_length or sys.maxsize
            if len(line) <= limit and line.isascii() and line.isprintable() and "=?" not in line:
                return line + str(policy.linesep)
        return super().fold(policy=policy)


class CachingHeaderRegistry(HeaderRegistry):
    """A ``HeaderRegistry`` that reuses header classes and, for string values, headers."""

    def __init__(self) -> None:
        super().__init__(base_class=LightHeader)
        self._classes: dict[str, type[BaseHeader]] = {}
        self._headers: dict[tuple[str, str], BaseHeader] = {}
        for name in ("from", "to", "cc", "bcc", "reply-to"):
            self.map_to_type(name, LazyAddressHeader)
        self.map_to_type("date", LazyDateHeader)
        self.map_to_type("message-id", LazyMessageIDHeader)

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
        if type(value) is not str or name.lower() in _UNCACHED:
            return self[name](name, value)
        key = (name, value)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) >= _CACHE_SIZE:
                self._headers.clear()  # bounded: distinct values must not pile up
            header = self[name](name, value)
            header.__dict__["_mailreset_folds"] = {}  # shared by many messages: remember folds
            self._headers[key] = header
        return header


def make_caching_policy() -> EmailPolicy[EmailMessage]:
    """``email.policy.default`` with its own caching header registry, unchecked.

    Use :func:`caching_policy`, which hands this out only on a Python where it was seen to
    write what ``email.policy.default`` writes.
    """
    return default_policy.clone(header_factory=CachingHeaderRegistry())


def caching_policy() -> EmailPolicy[EmailMessage]:
    """A new caching policy, or ``email.policy.default`` where the self-check failed.

    The check (:func:`faithful`) runs once per process, on first use.
    """
    return make_caching_policy() if _caching_is_faithful() else default_policy


@functools.cache
def _caching_is_faithful() -> bool:
    # Looked up at call time, so a test can swap in a candidate that fails the check.
    if faithful(make_caching_policy):
        return True
    log.debug("the caching email policy failed its self-check: using email.policy.default")
    return False


def faithful(
    candidate: Callable[[], EmailPolicy[EmailMessage]],
    reference: EmailPolicy[EmailMessage] = default_policy,
) -> bool:
    """Whether messages made with ``candidate()`` serialise and read back as with ``reference``.

    The sample messages hold what the builder puts in its messages (names with commas, quotes
    and non-ASCII, checked addresses, a long subject that folds, a non-ASCII one, a Date
    from a datetime, a checked Message-ID, a text+HTML alternative and an attachment), each
    made twice so the second is served from the caches; they are compared as bytes under the
    folding settings of the wire (CRLF, and CRLF with UTF-8 headers for SMTPUTF8) and
    header by header as a reader sees them. Anything raised counts as a difference.
    """
    try:
        policy = candidate()
        for kind in (0, 1):
            theirs = _sample(reference, kind)
            expected = [theirs.as_bytes(policy=reference.clone(**f)) for f in _FOLDINGS]
            for _ in range(2):  # the second message is served from the caches
                ours = _sample(policy, kind)
                if [ours.as_bytes(policy=policy.clone(**f)) for f in _FOLDINGS] != expected:
                    return False
                for part, reference_part in zip(ours.walk(), theirs.walk(), strict=True):
                    if _read_back(part) != _read_back(reference_part):
                        return False
    except Exception as error:  # any failure at all means: do not use it
        log.debug("the caching email policy's self-check raised %r", error)
        return False
    return True


_FOLDINGS: tuple[dict[str, Any], ...] = (
    {"linesep": "\r\n"},
    {"linesep": "\r\n", "utf8": True},
)
_SAMPLE_DATE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def _sample(policy: EmailPolicy[EmailMessage], kind: int) -> EmailMessage:
    """Sample message ``kind`` (0: English text+HTML+attachment, 1: Chinese text only)."""
    message = EmailMessage(policy=policy)
    message["From"] = "Zoë Ünïcode <no-reply@acme.example>"
    message["To"] = CheckedAddresses(
        (Address("Smith, Bob", "bob", "example.com"), Address("", "carol", "example.org"))
    )
    message["Cc"] = CheckedAddresses((Address("张三", "zhang", "example.cn"),))
    message["Reply-To"] = 'Bob "The Builder" Smith <bob@example.com>'
    message["Date"] = _SAMPLE_DATE
    message["Message-ID"] = CheckedMessageID("<177.2.3@acme.example>")
    message["Auto-Submitted"] = "auto-generated"
    if kind:
        message["Subject"] = "重置您的 Acme 密码"
        message.set_content("你好\n")
    else:
        message["Subject"] = "Reset the password of your account at Acme " * 3
        message.set_content("Hello,\nreset it here: https://acme.example/reset/t0k\n")
        message.add_alternative("<p>Hello, <a href='https://acme.example/'>reset</a></p>", "html")
        message.add_attachment(
            b"%PDF-1.4", maintype="application", subtype="pdf", filename="résumé.pdf"
        )
    # Fixed boundaries: the generator would draw random ones, and the bytes would differ.
    for index, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_check{index}")
    return message


def _read_back(message: EmailMessage) -> list[tuple[str, dict[str, Any]]]:
    """Each header of ``message`` (not its parts) as its reader sees it."""
    seen = []
    for name, header in message.items():
        attributes: dict[str, Any] = {"str": str(header)}
        for attribute in ("addresses", "datetime", "params", "content_type", "cte"):
            value = getattr(header, attribute, None)
            if value is not None:
                attributes[attribute] = dict(value) if attribute == "params" else value
        seen.append((name, attributes))
    return seen
