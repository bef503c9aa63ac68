"""DKIM signing of envelopes (RFC 6376; RFC 8463 for Ed25519), over dkimpy.

A self-hosted sender (its own Postfix, a VPS) needs DKIM for its mail to be trusted: receivers
check the signature against the public key published in DNS at
``{selector}._domainkey.{domain}``. :class:`DKIMSigner` wraps any
:class:`~mailreset.transports.Transport` and signs each envelope's bytes just before they are
handed on, so it works with every mailer::

    signer = DKIMSigner("mail", "app.example", key, transport=SMTPTransport(settings))
    mailer = SyncMailer(signer)

Needs the ``dkim`` extra: ``pip install 'mailreset[dkim]'`` (dkimpy, and PyNaCl for Ed25519).

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from mailreset._envelope import require_envelope
from mailreset.errors import ConfigurationError, PermanentFailure

try:
    import dkim as _dkimpy
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"mailreset.dkim needs dkimpy: pip install 'mailreset[dkim]' ({_error})"
    ) from _error

if TYPE_CHECKING:
    from types import TracebackType

    from mailreset._delivery import Delivery
    from mailreset.transports import Envelope, Transport

__all__ = ["DKIMSigner"]

_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.S)
# PKCS#8 (RFC 8410) wrapping of an Ed25519 key: this DER prefix, then the 32-byte seed.
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
_MIN_RSA_BITS = 1024  # receivers ignore smaller keys (RFC 8301)
_PROBE = b"From: probe@example.invalid\r\nSubject: probe\r\n\r\nprobe\r\n"


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not all(_LABEL.match(label) for label in value.split(".")):
        raise ConfigurationError(
            f"DKIMSigner {what} must be a DNS name such as 'mail' or 'app.example', not {value!r}"
        )
    return value


def _key_and_algorithm(private_key: object, algorithm: str | None) -> tuple[bytes, str]:
    """The key as dkimpy wants it (RSA: PEM; Ed25519: base64 seed) and the algorithm."""
    if isinstance(private_key, str):
        private_key = private_key.encode("ascii", "replace")
    if not isinstance(private_key, bytes):
        raise ConfigurationError(
            "DKIMSigner private_key must be a PEM string or bytes, "
            f"not {type(private_key).__name__}"
        )
    key = private_key.strip().replace(b"\r\n", b"\n")
    pem = _PEM.search(key)
    if pem is None:
        # dkimpy's own Ed25519 format (dknewkey): the base64 of the 32-byte seed.
        try:
            seed = base64.b64decode(key, validate=True)
        except binascii.Error:
            seed = b""
        if len(seed) != 32:
            raise ConfigurationError(
                "DKIMSigner private_key is neither a PEM private key (RSA or Ed25519, as "
                "`openssl genpkey` writes them) nor the base64 of a 32-byte Ed25519 key"
            )
        found = "ed25519-sha256"
    elif pem.group(1) == b"PRIVATE KEY":
        try:
            body = base64.b64decode(b"".join(pem.group(2).split()), validate=True)
        except binascii.Error as error:
            raise ConfigurationError(f"DKIMSigner private_key is a broken PEM: {error}") from None
        if body.startswith(_ED25519_PKCS8) and len(body) == len(_ED25519_PKCS8) + 32:
            key, found = base64.b64encode(body[len(_ED25519_PKCS8) :]), "ed25519-sha256"
        else:
            key, found = pem.group(0), "rsa-sha256"
    else:
        key, found = pem.group(0), "rsa-sha256"
    if algorithm is not None:
        if algorithm not in _ALGORITHMS:
            raise ConfigurationError(
                f"DKIMSigner algorithm must be one of {', '.join(_ALGORITHMS)}, not {algorithm!r}"
            )
        if algorithm != found:
            raise ConfigurationError(
                f"DKIMSigner algorithm {algorithm!r} does not fit the key given, which is "
                f"for {found!r}"
            )
    if found == "rsa-sha256":
        _check_rsa_size(key)
    return key, found


def _check_rsa_size(pem: bytes) -> None:
    from dkim.crypto import parse_pem_private_key

    try:
        bits = parse_pem_private_key(pem)["modulus"].bit_length()
    except Exception as error:  # dkimpy raises several types for a broken key
        raise ConfigurationError(
            f"DKIMSigner private_key is not a usable RSA key: {error}"
        ) from error
    if bits < _MIN_RSA_BITS:
        raise ConfigurationError(
            f"DKIMSigner private_key is a {bits}-bit RSA key; receivers ignore keys under "
            f"{_MIN_RSA_BITS} bits (RFC 8301): make a 2048-bit one"
        )


class DKIMSigner:
    """A :class:`~mailreset.transports.Transport` that DKIM-signs every envelope it sends.

    Each envelope's bytes get a ``DKIM-Signature`` header (relaxed/relaxed canonicalisation)
    and go on to ``transport``; sender, recipients and SMTPUTF8 stay as they were. Make one
    per transport; for a :class:`~mailreset.mailers.ThreadedMailer` with several connections
    pass a factory: ``ThreadedMailer(lambda: DKIMSigner(..., transport=SMTPTransport(s)))``.

    Args:
        selector: the selector whose TXT record holds the public key
            (``{selector}._domainkey.{domain}``).
        domain: the signing domain (``d=``); for DMARC it must be the From address's domain
            or a parent of it.
        private_key: a PEM private key, RSA (at least 1024 bits; 2048 is the norm) or
            Ed25519 (``openssl genpkey -algorithm ed25519``), or the base64 Ed25519 key
            dkimpy's ``dknewkey`` writes.
        transport: where signed envelopes go; without one, only :meth:`sign` works.
        algorithm: ``"rsa-sha256"`` or ``"ed25519-sha256"``; default: the key's.
        headers: the header names to sign; default: dkimpy's (From, To, Subject, Date,
            Message-ID, MIME and the other RFC 6376 recommendations, From signed twice).
        identity: the ``i=`` tag (an address at ``domain`` or a subdomain), if any.

    Raises:
        ConfigurationError: a bad selector, domain, key or option, when it is made.

    Attributes:
        selector: as given.
        domain: as given.
        algorithm: the signing algorithm in use.
        transport: the wrapped transport, or None.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        selector: str,
        domain: str,
        private_key: str | bytes,
        *,
        transport: Transport | None = None,
        algorithm: str | None = None,
        headers: Sequence[str] | None = None,
        identity: str | None = None,
    ) -> None:
        self.selector = _check_name(selector, "selector")
        self.domain = _check_name(domain, "domain")
        self._key, self.algorithm = _key_and_algorithm(private_key, algorithm)
        self.transport = transport
        if headers is not None and (
            isinstance(headers, str)
            or not all(isinstance(name, str) and name.isascii() for name in headers)
        ):
            raise ConfigurationError("DKIMSigner headers must be a list of header names")
        self._headers = None if headers is None else tuple(h.encode("ascii") for h in headers)
        self._identity = None if identity is None else identity.encode("utf-8")
        try:  # a key or option dkimpy cannot use fails now, not at the first message
            self._signature(_PROBE)
        except _dkimpy.DKIMException as error:
            raise ConfigurationError(
                f"DKIMSigner cannot sign with these settings: {error}"
            ) from error

    def __repr__(self) -> str:
        return (
            f"DKIMSigner(selector={self.selector!r}, domain={self.domain!r}, "
            f"algorithm={self.algorithm!r}, transport={self.transport!r})"
        )

    def _signature(self, data: bytes) -> bytes:
        signature: bytes = _dkimpy.sign(
            data,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self._key,
            identity=self._identity,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=self.algorithm.encode("ascii"),
            include_headers=self._headers,
            linesep=b"\r\n",
        )
        return signature

    def sign(self, envelope: Envelope) -> Envelope:
        """``envelope`` with a ``DKIM-Signature`` header in front of its bytes.

        Raises:
            PermanentFailure: dkimpy cannot sign these bytes (no From header, say).
        """
        require_envelope(self, envelope)
        try:
            signature = self._signature(envelope.data)
        except _dkimpy.DKIMException as error:
            raise PermanentFailure(
                f"DKIM signing failed for message {envelope.message_id or '?'}: {error}",
                smtp_error=f"DKIM signing failed: {error}",
                original_error=error,
            ) from error
        return attrs.evolve(envelope, data=signature + envelope.data)

    # -- Transport --------------------------------------------------------------------------

    def _wrapped(self) -> Transport:
        if self.transport is None:
            raise ConfigurationError(
                "this DKIMSigner has no transport to send through: "
                "DKIMSigner(..., transport=SMTPTransport(settings))"
            )
        return self.transport

    def open(self) -> None:
        """Open the wrapped transport."""
        self._wrapped().open()

    def send(self, envelope: Envelope) -> Delivery:
        """Sign ``envelope`` and send it through the wrapped transport."""
        return self._wrapped().send(self.sign(envelope))

    def close(self) -> None:
        """Close the wrapped transport (nothing to do without one)."""
        if self.transport is not None:
            self.transport.close()

    def __enter__(self) -> DKIMSigner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
