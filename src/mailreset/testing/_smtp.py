"""A real SMTP server on loopback that captures what it receives: the core of ``smtp_sink``.

It runs aiosmtpd in a thread (aiosmtpd's ``Controller``) with a handler that keeps each
message's bytes and can misbehave on purpose, so a mailer's retry and failure paths are
tested against a real server instead of a mocked ``smtplib``. The debug sink in ``devtools/``
is built on the same handler.

This module imports aiosmtpd; :mod:`mailreset.testing` loads it lazily.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailreset.testing._capture import CapturedMessage
from mailreset.testing._store import CaptureStore
from mailreset.transports import SMTPSettings

__all__ = ["CaptureHandler", "CaptureStore", "FaultPlan", "SMTPSink", "free_port"]


@attrs.frozen(kw_only=True)
class FaultPlan:
    """How a capture server misbehaves, on purpose, for testing mailers.

    Attributes:
        delay: seconds to wait before replying to DATA (a slow server).
        tempfail_first: answer ``451`` to DATA for the first N messages.
        fail_rate: answer ``451`` to DATA with this probability (``seed`` makes it repeatable).
        seed: seed for ``fail_rate``'s random numbers.
        reject: an :mod:`fnmatch` glob; matching recipients get ``550`` at RCPT.
        drop_after_data: close the connection instead of replying to DATA; stores nothing.

    .. versionadded:: 0.1
    """

    delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    tempfail_first: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    fail_rate: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    seed: int | None = None
    reject: str | None = None
    drop_after_data: bool = False

    @property
    def is_quiet(self) -> bool:
        """True when the plan injects no fault at all."""
        return self == _NO_FAULTS


_NO_FAULTS = FaultPlan()


class CaptureHandler:
    """aiosmtpd handler: stores every accepted message, or injects the planned fault.

    Only the hooks it needs are defined (``handle_RCPT``, ``handle_DATA``); faults are the
    status strings aiosmtpd sends back.
    """

    def __init__(self, store: CaptureStore | None = None, faults: FaultPlan = _NO_FAULTS) -> None:
        self.store = store if store is not None else CaptureStore()
        self._lock = threading.Lock()
        self.faults = faults

    @property
    def faults(self) -> FaultPlan:
        """The fault plan in force; setting one restarts its counters."""
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        with self._lock:
            self._faults = plan
            self._data_count = 0
            self._random = random.Random(plan.seed)  # noqa: S311 - fault injection, not crypto

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept the recipient, or refuse it with 550 when it matches ``reject``."""
        pattern = self._faults.reject
        if pattern is not None and fnmatch.fnmatch(address.lower(), pattern.lower()):
            return f"550 5.1.1 <{address}>: recipient rejected"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message and answer 250, unless the fault plan says otherwise."""
        plan = self._faults
        if plan.is_quiet:
            return self._accept(envelope)
        if plan.delay:
            await asyncio.sleep(plan.delay)
        if plan.drop_after_data:
            transport = getattr(server, "transport", None)
            if transport is not None:
                transport.abort()
            return "421 4.3.0 closing connection"
        with self._lock:
            self._data_count += 1
            tempfail = self._data_count <= plan.tempfail_first or (
                plan.fail_rate > 0 and self._random.random() < plan.fail_rate
            )
        if tempfail:
            return "451 4.3.0 temporary failure (injected by the test server)"
        return self._accept(envelope)

    def _accept(self, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        self.store.add(
            CapturedMessage(
                raw=content,
                envelope_from=envelope.mail_from or "",
                envelope_to=tuple(envelope.rcpt_tos),
            )
        )
        return "250 2.0.0 OK: message queued"


class _PipeliningHandler(CaptureHandler):
    """A CaptureHandler whose server also advertises PIPELINING (RFC 2920).

    aiosmtpd reads commands from a buffered stream one at a time, so pipelined commands are
    answered in order; it only lacks the EHLO keyword.
    """

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Add ``250-PIPELINING`` to aiosmtpd's own EHLO reply."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _ImplicitTLSController(Controller):
    """A Controller for implicit TLS, where AUTH without STARTTLS is not plain text.

    aiosmtpd only counts STARTTLS as TLS, so it warns about AUTH over implicit TLS; the
    warning is wrong there and would fail ``filterwarnings = error`` test runs.
    """

    def factory(self) -> SMTP:
        """Make the per-connection SMTP protocol without the misleading warning."""
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "Requiring AUTH while not requiring TLS", UserWarning
            )
            protocol: SMTP = super().factory()  # type: ignore[no-untyped-call]
            return protocol


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@attrs.define(kw_only=True)
class _Authenticator:
    credentials: Mapping[str, str]

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            username = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if self.credentials.get(username) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class _QuietLoginData(logging.Filter):
    """Drops aiosmtpd 1.4's own "Session.login_data is deprecated" line.

    aiosmtpd logs it on every successful AUTH because its own code sets that attribute: it
    says nothing about the caller, and a burst of authenticated test mail would drown in it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Session.login_data is deprecated")


_QUIET_LOGIN_DATA = _QuietLoginData()


class SMTPSink:
    """A capturing SMTP server on loopback, run in a background thread.

    ``SMTPSink()`` picks a free port on 127.0.0.1. ``starttls_context`` offers STARTTLS,
    ``ssl_context`` makes the whole connection TLS (implicit TLS, as on port 465) and
    ``credentials`` (``{username: password}``) turns on and requires AUTH.
    ``pipelining=True`` advertises PIPELINING (aiosmtpd answers pipelined commands in order).
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        faults: FaultPlan = _NO_FAULTS,
        max_size: int | None = None,
        starttls_context: ssl.SSLContext | None = None,
        ssl_context: ssl.SSLContext | None = None,
        credentials: Mapping[str, str] | None = None,
        store: CaptureStore | None = None,
        hostname: str = "mailreset-sink.localhost",
        pipelining: bool = False,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        handler_class = _PipeliningHandler if pipelining else CaptureHandler
        self.handler = handler_class(store, faults)
        self.ssl_context = ssl_context
        self.starttls_context = starttls_context
        self.credentials = dict(credentials) if credentials is not None else None
        smtp_options: dict[str, Any] = {
            "server_hostname": hostname,
            "decode_data": False,
            "enable_SMTPUTF8": True,
            # aiosmtpd's default limit is 32 MiB; None means "no limit" to it.
            "data_size_limit": max_size,
        }
        if starttls_context is not None:
            smtp_options.update(tls_context=starttls_context, require_starttls=False)
        if credentials is not None:
            logging.getLogger("mail.log").addFilter(_QUIET_LOGIN_DATA)  # a second add is a no-op
            smtp_options.update(
                authenticator=_Authenticator(credentials=dict(credentials)),
                auth_required=True,
                # Over implicit TLS the channel is already encrypted.
                auth_require_tls=starttls_context is not None,
            )
        self._controller_class = _ImplicitTLSController if ssl_context is not None else Controller
        self._controller_options: dict[str, Any] = dict(
            hostname=host, port=self.port, ssl_context=ssl_context, **smtp_options
        )
        # Made in start(): a Controller owns an event loop from birth, and one that never
        # ran would only be closed by the garbage collector (noisily, on Python 3.10).
        self._controller: Controller | None = None

    @property
    def settings(self) -> SMTPSettings:
        """:class:`~mailreset.transports.SMTPSettings` that reach this server."""
        context = self.ssl_context or self.starttls_context
        username, password = next(iter((self.credentials or {}).items()), (None, None))
        return SMTPSettings(
            username=username,
            password=password,
            host=self.host,
            port=self.port,
            ssl=self.ssl_context is not None,
            starttls=self.starttls_context is not None,
            ssl_context=None if context is None else self.client_context,
        )

    #: A client-side TLS context for tests; set it to one that trusts the server's CA.
    client_context: ssl.SSLContext | None = None

    @property
    def store(self) -> CaptureStore:
        """Where captured messages go."""
        return self.handler.store

    @property
    def messages(self) -> list[CapturedMessage]:
        """A snapshot of the captured messages, oldest first."""
        return self.store.messages

    @property
    def faults(self) -> FaultPlan:
        """The fault plan in force."""
        return self.handler.faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        self.handler.faults = plan

    @contextmanager
    def faulty(self, **plan: Any) -> Iterator[FaultPlan]:
        """Inject the faults of ``FaultPlan(**plan)`` inside a ``with`` block only."""
        before = self.faults
        self.faults = FaultPlan(**plan)
        try:
            yield self.faults
        finally:
            self.faults = before

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Wait until ``count`` messages arrived; see :meth:`CaptureStore.wait_for`."""
        return self.store.wait_for(count, timeout)

    def find(self, **criteria: Any) -> list[CapturedMessage]:
        """The captured messages matching ``to``/``subject``; see :meth:`CaptureStore.find`."""
        return self.store.find(**criteria)

    def assert_sent(self, **criteria: Any) -> CapturedMessage:
        """Assert a matching message arrived; see :meth:`CaptureStore.assert_sent`."""
        __tracebackhide__ = True
        return self.store.assert_sent(**criteria)

    def clear(self) -> None:
        """Forget captured messages and lift every fault."""
        self.store.clear()
        self.faults = _NO_FAULTS

    def start(self) -> SMTPSink:
        """Start serving; returns once the server answers."""
        if self._controller is None:
            controller = self._controller_class(self.handler, **self._controller_options)
            try:
                controller.start()
            except BaseException:
                if not controller.loop.is_running():
                    controller.loop.close()
                raise
            self._controller = controller
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SMTPSink {self.host}:{self.port} messages={len(self.store)}>"
