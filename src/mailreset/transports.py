"""How a message reaches a server: the Transport protocol and the SMTP and in-memory transports.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import threading
import time
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mailreset._connect import connect
from mailreset._delivery import Delivery
from mailreset._envelope import Envelope, message_from_wire, require_envelope
from mailreset._settings import SMTPSettings
from mailreset._smtp_errors import mapping_smtp_errors, refused_failure, reply_failure
from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentFailure,
    TemporaryFailure,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Envelope", "MemoryTransport", "SMTPSettings", "SMTPTransport", "Transport"]

log = logging.getLogger("mailreset")


@runtime_checkable
class Transport(Protocol):
    """**Protocol:** one way to hand a message to a mail server (or to memory).

    ``send`` gets an :class:`Envelope`: exactly the bytes and recipients to deliver, already
    checked (as an HTTP mail API or a DKIM signer wants them). Every mailer calls it the same
    way for every transport, built-in or not. ``open`` is optional to call (``send`` opens
    what it needs); ``close`` releases the connection. :class:`SMTPTransport` and
    :class:`MemoryTransport` are also context managers.

    .. versionadded:: 0.1
    """

    def open(self) -> None:
        """Get ready to send: connect, say EHLO, start TLS, log in."""
        ...

    def send(self, envelope: Envelope) -> Delivery:
        """Deliver ``envelope`` or raise a :class:`~mailreset.errors.DeliveryError`."""
        ...

    def close(self) -> None:
        """Release the connection; ``send`` may open a new one later."""
        ...


_PERIOD_AT_LINE_START = re.compile(rb"(?m)^\.")
_STALE_CODES = frozenset({421})


class _Stale(Exception):
    """The reused connection was gone before the message's content went out."""


class SMTPTransport:
    """Sends over one persistent SMTP connection, reconnecting when the server dropped it.

    The connection opens on the first :meth:`send` (or :meth:`open`) and stays open for the
    next messages. STARTTLS and implicit TLS verify the certificate and host name with one
    ``ssl.create_default_context()`` per process unless ``settings.ssl_context`` is given.
    Where the server advertises PIPELINING, MAIL, RCPT and DATA go out in one write.

    When a reused connection turns out to be closed (a 421, a reset) before the message's
    content was sent, it reconnects once within the same ``send``; once the content is out,
    it never resends by itself: an unknown outcome is a :class:`TemporaryFailure`.
    Thread-safe: one lock guards the connection.

    Attributes:
        settings: where and how to connect.
        pipelining: False turns off PIPELINING even where the server offers it.

    .. versionadded:: 0.1
    """

    def __init__(self, settings: SMTPSettings | None = None, *, pipelining: bool = True) -> None:
        if settings is not None and not isinstance(settings, SMTPSettings):
            raise ConfigurationError(
                f"SMTPTransport needs SMTPSettings, not {type(settings).__name__}"
            )
        self.settings = settings if settings is not None else SMTPSettings()
        self.pipelining = pipelining
        self._where = f"{self.settings.host}:{self.settings.port}"
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        #: How many connections this transport opened (diagnostics and tests).
        self.connections_opened = 0

    def __repr__(self) -> str:
        state = "open" if self._connection is not None else "closed"
        return f"<SMTPTransport {self._where} {state}>"

    @property
    def is_open(self) -> bool:
        """True while a connection is held (it may still turn out to be dropped)."""
        return self._connection is not None

    @property
    def uses_pipelining(self) -> bool:
        """True when the current connection sends MAIL, RCPT and DATA in one write."""
        connection = self._connection
        return bool(self.pipelining and connection and connection.has_extn("pipelining"))

    def open(self) -> None:
        """Connect, EHLO, STARTTLS and AUTH as the settings say, unless already connected."""
        with self._lock:
            self._ensure_connection()

    def close(self) -> None:
        """Say QUIT and drop the connection (quietly if the server is already gone)."""
        with self._lock:
            self._drop(polite=True)

    def __enter__(self) -> SMTPTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, envelope: Envelope) -> Delivery:
        """Send ``envelope``; return the :class:`~mailreset.mailers.Delivery`.

        Raises :class:`~mailreset.errors.TemporaryFailure` or
        :class:`~mailreset.errors.PermanentFailure` when the server did not take it.
        """
        require_envelope(self, envelope)
        started = time.monotonic()
        with self._lock:
            reused = self._connection is not None
            connection = self._ensure_connection()
            try:
                refused = self._transaction(connection, envelope, reused=reused)
            except _Stale:
                log.info(
                    "SMTP connection to %s was closed by the server; reconnecting", self._where
                )
                self._drop(polite=False)
                connection = self._ensure_connection()
                try:
                    refused = self._transaction(connection, envelope, reused=False)
                except _Stale as error:  # pragma: no cover - reused=False never raises it
                    raise TemporaryFailure(str(error)) from error
        accepted = tuple(address for address in envelope.recipients if address not in refused)
        return Delivery(
            message_id=envelope.message_id or "",
            envelope_from=envelope.sender,
            accepted=accepted,
            refused=refused,
            attempts=1,
            elapsed=time.monotonic() - started,
        )

    # -- connection -------------------------------------------------------------------------

    def _ensure_connection(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        connection = connect(self.settings, self._where)
        self._connection = connection
        self.connections_opened += 1
        log.debug("SMTP connection to %s open", self._where)
        return connection

    def _drop(self, *, polite: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if polite:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                connection.quit()
        connection.close()

    # -- one message --------------------------------------------------------------------------

    def _transaction(
        self, connection: smtplib.SMTP, envelope: Envelope, *, reused: bool
    ) -> dict[str, tuple[int, str]]:
        content_sent = outcome_unknown = False
        try:
            with mapping_smtp_errors(self._where):
                try:
                    if self.pipelining and connection.has_extn("pipelining"):
                        return self._pipelined(connection, envelope)
                    return self._stepwise(connection, envelope)
                except _ContentSent as marker:
                    content_sent = True
                    outcome_unknown = marker.outcome_unknown
                    after_content = marker.error
                # Raised outside the except block so that its own __context__ (a timeout
                # behind smtplib's "Connection unexpectedly closed") stays readable.
                raise after_content
        except DeliveryError as error:
            # The final dot went out and no reply came: the server may hold the message.
            error.maybe_delivered = outcome_unknown
            connection_gone = isinstance(error, TemporaryFailure) and (
                error.smtp_code is None or error.smtp_code in _STALE_CODES
            )
            if connection_gone:
                self._drop(polite=False)
                # A timeout means a slow server, not a dropped connection: no quick retry.
                if (
                    reused
                    and not content_sent
                    and not isinstance(error.original_error, TimeoutError)
                ):
                    raise _Stale(str(error)) from error
            elif not content_sent:
                self._reset(connection)
            raise

    def _reset(self, connection: smtplib.SMTP) -> None:
        # A refused transaction leaves the server mid-envelope; RSET before the next MAIL.
        if self._connection is not connection:
            return
        try:
            code, _ = connection.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop(polite=False)

    def _mail_options(self, connection: smtplib.SMTP, envelope: Envelope) -> list[str]:
        options = []
        if connection.has_extn("size"):
            options.append(f"SIZE={len(envelope.data)}")
        if envelope.smtputf8:
            if not connection.has_extn("smtputf8"):
                # No retry can fix it, but it is this message's trouble, not every message's.
                needing = [a for a in (envelope.sender, *envelope.recipients) if not a.isascii()]
                raise PermanentFailure(
                    f"{self._where} does not offer SMTPUTF8, which these internationalised "
                    f"addresses need: {', '.join(needing)}",
                    smtp_error="SMTPUTF8 not offered",
                )
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        return options

    def _stepwise(
        self, connection: smtplib.SMTP, envelope: Envelope
    ) -> dict[str, tuple[int, str]]:
        code, reply = connection.mail(envelope.sender, self._mail_options(connection, envelope))
        if code != 250:
            raise reply_failure(code, reply, what=f"MAIL FROM at {self._where}")
        refused: dict[str, tuple[int, str]] = {}
        for address in envelope.recipients:
            code, reply = connection.rcpt(address)
            if code in _STALE_CODES:
                raise reply_failure(code, reply, what=f"RCPT TO at {self._where}")
            if code not in (250, 251):
                refused[address] = (code, reply.decode("utf-8", "replace"))
        if len(refused) == len(envelope.recipients):
            raise refused_failure(refused)
        code, reply = connection.docmd("DATA")
        if code != 354:
            raise reply_failure(code, reply, what=f"DATA at {self._where}")
        self._finish_data(connection, envelope)
        return refused

    def _pipelined(
        self, connection: smtplib.SMTP, envelope: Envelope
    ) -> dict[str, tuple[int, str]]:
        encoding = "utf-8" if envelope.smtputf8 else "ascii"
        options = " ".join(self._mail_options(connection, envelope))
        lines = [f"MAIL FROM:<{envelope.sender}>{' ' if options else ''}{options}\r\n"]
        lines.extend(f"RCPT TO:<{address}>\r\n" for address in envelope.recipients)
        lines.append("DATA\r\n")
        connection.send("".join(lines).encode(encoding))
        mail_code, mail_reply = connection.getreply()
        refused: dict[str, tuple[int, str]] = {}
        stale: tuple[int, bytes] | None = None
        for address in envelope.recipients:
            code, reply = connection.getreply()
            if code in _STALE_CODES:
                stale = (code, reply)
            if code not in (250, 251):
                refused[address] = (code, reply.decode("utf-8", "replace"))
        data_code, data_reply = connection.getreply()
        if data_code == 354 and (mail_code != 250 or len(refused) == len(envelope.recipients)):
            # RFC 2920: a server that said 354 anyway gets an empty message, then we stop.
            connection.send(b".\r\n")
            connection.getreply()
        if mail_code != 250:
            raise reply_failure(mail_code, mail_reply, what=f"MAIL FROM at {self._where}")
        if stale is not None:
            raise reply_failure(*stale, what=f"RCPT TO at {self._where}")
        if len(refused) == len(envelope.recipients):
            raise refused_failure(refused)
        if data_code != 354:
            raise reply_failure(data_code, data_reply, what=f"DATA at {self._where}")
        self._finish_data(connection, envelope)
        return refused

    def _finish_data(self, connection: smtplib.SMTP, envelope: Envelope) -> None:
        data = _PERIOD_AT_LINE_START.sub(b"..", envelope.data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        try:
            connection.send(data + b".\r\n")
        except (smtplib.SMTPException, OSError) as error:
            # sendall() failed, so the final dot never left: the server cannot accept it.
            raise _ContentSent(error) from error
        try:
            code, reply = connection.getreply()
        except (smtplib.SMTPException, OSError) as error:
            raise _ContentSent(error, outcome_unknown=True) from error
        if code != 250:
            raise _ContentSent(reply_failure(code, reply, what=f"the message at {self._where}"))


class _ContentSent(Exception):
    """Carries a failure that came after the message's content was sent."""

    def __init__(self, error: Exception, *, outcome_unknown: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        #: True when the whole message, final dot included, went out before the failure.
        self.outcome_unknown = outcome_unknown


class MemoryTransport:
    """The in-memory twin of :class:`SMTPTransport`, for tests: it records what it is sent.

    It gets what every transport gets, an :class:`Envelope` (checked and serialised once by
    :meth:`Envelope.from_message`), and records it: :attr:`envelopes` holds what it was
    sent, :attr:`messages` the same bytes parsed back as a server would read them.
    :meth:`fail_next` makes the next sends raise, to test what happens on failure.
    Thread-safe.

    Attributes:
        is_open: whether :meth:`open` was called since the last :meth:`close`.
        opened: how many times it was opened.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._envelopes: list[Envelope] = []
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()
        self.is_open = False
        self.opened = 0

    def __repr__(self) -> str:
        return f"<MemoryTransport messages={len(self._envelopes)}>"

    @property
    def envelopes(self) -> list[Envelope]:
        """A snapshot of the envelopes sent, oldest first."""
        with self._lock:
            return list(self._envelopes)

    @property
    def messages(self) -> list[EmailMessage]:
        """The messages sent, oldest first, parsed from their bytes (``policy.default``).

        Bcc is not among their headers (it never goes on the wire): see :attr:`envelopes`
        for every recipient.
        """
        return [message_from_wire(envelope.data) for envelope in self.envelopes]

    def __len__(self) -> int:
        with self._lock:
            return len(self._envelopes)

    def open(self) -> None:
        """Mark the transport open (nothing to connect)."""
        with self._lock:
            if not self.is_open:
                self.is_open = True
                self.opened += 1

    def close(self) -> None:
        """Mark the transport closed; the next ``send`` opens it again."""
        with self._lock:
            self.is_open = False

    def __enter__(self) -> MemoryTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def fail_next(self, *errors: BaseException) -> None:
        """Make the next ``len(errors)`` sends raise these errors, in order."""
        with self._lock:
            self._failures.extend(errors)

    def clear(self) -> None:
        """Forget the recorded envelopes and pending failures."""
        with self._lock:
            self._envelopes.clear()
            self._failures.clear()

    def send(self, envelope: Envelope) -> Delivery:
        """Record ``envelope``; return its Delivery (every recipient accepted)."""
        require_envelope(self, envelope)
        self.open()
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)
            self._envelopes.append(envelope)
        return Delivery(
            message_id=envelope.message_id or "",
            envelope_from=envelope.sender,
            accepted=envelope.recipients,
        )
