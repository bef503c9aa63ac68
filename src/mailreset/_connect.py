"""Opening an SMTP connection as SMTPSettings say: TLS (and its mix-ups), EHLO, one AUTH.

Two things here exist because a real server punishes the naive way:

- A TLS mode mix-up (``starttls`` against an implicit-TLS port such as 465, ``ssl`` against a
  plain port) looks like a timeout or a garbled handshake. Retrying it only repeats the wait,
  so when the first try fails that way one short probe tells which mode the port speaks, and
  the failure becomes a :class:`PermanentFailure` that names the mix-up and the settings.
- smtplib's ``login()`` tries every mechanism the server offers, one after the other: two
  failed AUTH commands per connection for a wrong password, the pattern that locks accounts.
  We pick one mechanism and send one AUTH command.
"""

from __future__ import annotations

import functools
import re
import smtplib
import socket
import ssl
from typing import TYPE_CHECKING

from mailreset._smtp_errors import mapping_smtp_errors
from mailreset.errors import DeliveryError, PermanentFailure

if TYPE_CHECKING:
    from mailreset._settings import SMTPSettings

_REPLY_LINE = re.compile(rb"^[2-5][0-9][0-9][ -]")
# PLAIN first: one round trip, fine under TLS; LOGIN for old servers; CRAM-MD5 last, since
# it needs the server to keep passwords in clear.
_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")


@functools.lru_cache(maxsize=16)
def _context_for(ca_file: str | None) -> ssl.SSLContext:
    # Building a verifying context loads the CA store: ~50 ms of CPU. One per CA file and
    # process is enough; an SSLContext is safe to share between threads and connections.
    return ssl.create_default_context(cafile=ca_file)


def tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    """The verifying context for ``settings``: its own, one for its ``ca_file``, or the default."""
    if settings.ssl_context is not None:
        return settings.ssl_context
    return _context_for(settings.ca_file)


@functools.lru_cache(maxsize=1)
def local_name() -> str:
    """This machine's FQDN, looked up once (smtplib would look it up per connection)."""
    return socket.getfqdn() or "localhost"


def connect(settings: SMTPSettings, where: str) -> smtplib.SMTP:
    """A connection that said EHLO, started TLS and logged in as ``settings`` say.

    Raises :class:`~mailreset.errors.DeliveryError`; ``every_message`` is True on it when no
    retry can help (AUTH refused, certificate not verified, TLS mode mix-up).
    """
    name = settings.local_hostname or local_name()
    with mapping_smtp_errors(where):
        try:
            connection = _open(settings, name)
        except (smtplib.SMTPServerDisconnected, ssl.SSLError, TimeoutError) as error:
            mixup = _mixup(settings, where, error)
            if mixup is not None:
                raise mixup from error
            raise
        try:
            _greet(connection, settings, where)
        except BaseException:
            connection.close()
            raise
    return connection


def _open(settings: SMTPSettings, name: str) -> smtplib.SMTP:
    if settings.ssl:
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            local_hostname=name,
            timeout=settings.timeout,
            context=tls_context(settings),
        )
    return smtplib.SMTP(
        settings.host, settings.port, local_hostname=name, timeout=settings.timeout
    )


def _greet(connection: smtplib.SMTP, settings: SMTPSettings, where: str) -> None:
    if connection.sock is not None:
        # Commands are small writes followed by a wait for the reply: Nagle's algorithm
        # would hold each one back for the previous ACK.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    code, reply = connection.ehlo()
    if code != 250:
        code, reply = connection.helo()
        if code != 250:
            raise smtplib.SMTPHeloError(code, reply)
    if settings.starttls:
        connection.starttls(context=tls_context(settings))
        connection.ehlo()
    if settings.username is not None:
        _authenticate(connection, settings, where)


def _authenticate(connection: smtplib.SMTP, settings: SMTPSettings, where: str) -> None:
    offered = connection.esmtp_features.get("auth", "").upper().split()
    mechanism = next((name for name in _MECHANISMS if name in offered), None)
    if mechanism is None:
        raise PermanentFailure(
            f"{where} offers no AUTH mechanism we speak (it offers: "
            f"{' '.join(offered) or 'none'}); SMTPSettings.username needs PLAIN, LOGIN or "
            "CRAM-MD5"
            + (
                ""
                if settings.starttls or settings.ssl
                else " (many servers offer AUTH only after STARTTLS: set SMTPSettings.starttls)"
            ),
            smtp_error="no usable AUTH mechanism",
            every_message=True,
        )
    # smtplib's documented authobjects read the credentials from these attributes.
    connection.user = settings.username or ""
    connection.password = settings.password or ""
    # auth() sends exactly one AUTH command and raises SMTPAuthenticationError when refused.
    if mechanism == "PLAIN":
        connection.auth(mechanism, connection.auth_plain)
    elif mechanism == "LOGIN":
        connection.auth(mechanism, connection.auth_login)
    else:
        connection.auth(mechanism, connection.auth_cram_md5)


def _mixup(settings: SMTPSettings, where: str, error: BaseException) -> DeliveryError | None:
    """The mix-up behind a failed connect, when a short probe shows the port's real mode."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return None
    if settings.ssl:
        greeting = _plain_greeting(settings)
        if greeting is None:
            return None
        return PermanentFailure(
            f"TLS mode mix-up: SMTPSettings.ssl is on (implicit TLS from the first byte) but "
            f"{where} speaks plain SMTP first (it greeted with {greeting!r}): turn "
            "SMTPSettings.ssl off and SMTPSettings.starttls on for a STARTTLS port such as "
            "587, or use the server's implicit-TLS port (usually 465)",
            smtp_error="TLS mode mix-up: implicit TLS against a plain port",
            original_error=error,
            every_message=True,
        )
    # No greeting in time on a plain connection: is the port waiting for a TLS handshake?
    timed_out = isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)
    if not timed_out or not _speaks_tls(settings):
        return None
    setting = "SMTPSettings.starttls is on" if settings.starttls else "SMTPSettings.ssl is off"
    return PermanentFailure(
        f"TLS mode mix-up: {setting} but {where} expects TLS from the first byte (implicit "
        "TLS, as on port 465): turn SMTPSettings.ssl on and SMTPSettings.starttls off for "
        "this port, or use the server's STARTTLS port (usually 587)",
        smtp_error="TLS mode mix-up: plain or STARTTLS against an implicit-TLS port",
        original_error=error,
        every_message=True,
    )


def _speaks_tls(settings: SMTPSettings) -> bool:
    # The probe only asks whether a TLS handshake completes, so it verifies nothing and
    # sends nothing: no credentials or mail ever go over it.
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((settings.host, settings.port), settings.timeout) as raw,
            probe.wrap_socket(raw, server_hostname=settings.host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _plain_greeting(settings: SMTPSettings) -> str | None:
    try:
        with socket.create_connection((settings.host, settings.port), settings.timeout) as raw:
            first = raw.recv(512)
    except OSError:
        return None
    if not _REPLY_LINE.match(first):
        return None
    return first.split(b"\r\n", 1)[0].decode("ascii", "replace")[:80]
