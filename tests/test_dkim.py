"""DKIMSigner: signatures made here verify with dkimpy after a real SMTP hop.

dkimpy verifies with the public key served by a DNS function in the test (no network), for
RSA (rsa-sha256) and Ed25519 (ed25519-sha256), after the message went through the real
``smtp_sink``; a changed byte or another key fails the same check.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("dkim", reason="needs the dkim extra: pip install 'mailreset[dkim]'")
pytest.importorskip("nacl", reason="needs the dkim extra: pip install 'mailreset[dkim]'")

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailreset import (
    ConfigurationError,
    Envelope,
    MemoryTransport,
    MessageBuilder,
    SMTPTransport,
    SyncMailer,
    ThreadedMailer,
)
from mailreset.dkim import DKIMSigner
from tests.browser_support import in_ci
from tests.postfix_support import Postfix, unavailable_reason

SELECTOR = "mail2026"
DOMAIN = "app.example"
RESET = {"url": "https://app.example/reset/abc.def", "expires_minutes": 10, "app_name": "Acme"}


def rsa_key(bits: int = 2048) -> tuple[bytes, bytes]:
    """(PEM private key, DNS TXT record) for a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def ed25519_key() -> tuple[bytes, bytes]:
    """(PEM private key as ``openssl genpkey`` writes it, DNS TXT record) for Ed25519."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)


def dns(records: dict[str, bytes]) -> Callable[..., bytes | None]:
    """A dnsfunc for dkimpy that serves ``records`` (name -> TXT) and nothing else."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name.decode("ascii").rstrip("."))

    return lookup


def verifies(raw: bytes, record: bytes) -> bool:
    result: bool = dkim.verify(raw, dnsfunc=dns({f"{SELECTOR}._domainkey.{DOMAIN}": record}))
    return result


KEYS = {"rsa-sha256": rsa_key, "ed25519-sha256": ed25519_key}


@pytest.fixture(scope="module", params=sorted(KEYS))
def key(request: pytest.FixtureRequest) -> tuple[str, bytes, bytes]:
    """(algorithm, private key PEM, TXT record), one per algorithm; made once per module."""
    algorithm = request.param
    private, record = KEYS[algorithm]()
    return algorithm, private, record


@pytest.fixture
def builder() -> MessageBuilder:
    return MessageBuilder(sender="Acme <no-reply@app.example>", locale="zh_Hans")


def test_a_signed_message_verifies_after_a_real_smtp_hop(
    key: tuple[str, bytes, bytes], builder: MessageBuilder, smtp_sink: Any
) -> None:
    """Signed by DKIMSigner around SMTPTransport, received by aiosmtpd, verified by dkimpy
    with the public key from a DNS function: relaxed/relaxed, the key's algorithm."""
    algorithm, private, record = key
    message = builder.build("reset_password", to="Bob <bob@example.com>", context=RESET)
    signer = DKIMSigner(SELECTOR, DOMAIN, private, transport=SMTPTransport(smtp_sink.settings))

    with SyncMailer(signer) as mailer:
        delivery = mailer.send(message).result(timeout=10)
    [received] = smtp_sink.wait_for(1)
    signature = received.message["DKIM-Signature"]
    tags = dict(
        part.strip().split("=", 1) for part in "".join(str(signature).split()).split(";") if part
    )

    assert verifies(received.raw, record)
    assert (algorithm, "relaxed/relaxed", DOMAIN, SELECTOR) == (
        tags["a"],
        tags["c"],
        tags["d"],
        tags["s"],
    )
    assert {"from", "to", "subject", "date", "message-id"} <= set(tags["h"].lower().split(":"))
    assert ("bob@example.com",) == delivery.accepted == received.envelope_to
    assert algorithm == signer.algorithm


def test_a_changed_byte_or_another_key_fails_verification(
    key: tuple[str, bytes, bytes], builder: MessageBuilder
) -> None:
    """The check above can fail: a changed body, or the record of another key, is refused."""
    algorithm, private, record = key
    transport = MemoryTransport()
    signer = DKIMSigner(SELECTOR, DOMAIN, private, transport=transport)
    signer.send(
        Envelope.from_message(builder.build("reset_password", to="b@example.com", context=RESET))
    )
    [signed] = transport.envelopes
    _, other_record = KEYS[algorithm]()

    assert verifies(signed.data, record)
    body_end = signed.data.rindex(b"--")  # the closing boundary's last dashes
    tampered = signed.data[:body_end] + b"-," + signed.data[body_end + 2 :]
    assert tampered != signed.data
    assert not verifies(tampered, record)
    assert not verifies(signed.data, other_record)


def test_signing_keeps_the_envelope_and_works_with_every_mailer(
    key: tuple[str, bytes, bytes], builder: MessageBuilder
) -> None:
    """Sender, recipients (Bcc too), Message-ID and SMTPUTF8 stay; only the bytes gain a
    DKIM-Signature header in front; a ThreadedMailer with a factory signs the same way."""
    _, private, record = key
    message = builder.build(
        "reset_password", to="用户@例子.测试", bcc="audit@app.example", context=RESET
    )
    envelope = Envelope.from_message(message)
    transports: list[MemoryTransport] = []

    def factory() -> DKIMSigner:
        transports.append(MemoryTransport())
        return DKIMSigner(SELECTOR, DOMAIN, private, transport=transports[-1])

    signed = DKIMSigner(SELECTOR, DOMAIN, private).sign(envelope)
    with ThreadedMailer(factory, workers=1) as mailer:
        mailer.send(message).result(timeout=10)
    [threaded] = transports[0].envelopes

    assert signed.data.startswith(b"DKIM-Signature: ")
    assert signed.data.endswith(envelope.data)
    assert (envelope.sender, envelope.recipients, envelope.message_id, True) == (
        signed.sender,
        signed.recipients,
        signed.message_id,
        signed.smtputf8,
    )
    assert verifies(signed.data, record)
    assert verifies(threaded.data, record)


def test_dknewkey_style_ed25519_keys_are_accepted() -> None:
    """The base64 Ed25519 key dkimpy's dknewkey writes works as well as a PEM one."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    envelope = Envelope(
        sender="a@app.example",
        recipients=("b@example.com",),
        data=b"From: a@app.example\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n",
    )

    signed = DKIMSigner(SELECTOR, DOMAIN, base64.b64encode(seed).decode()).sign(envelope)

    assert verifies(signed.data, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public))


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"selector": "bad selector"}, "selector"),
        ({"domain": "app..example"}, "domain"),
        ({"private_key": "not a key"}, "private_key"),
        ({"private_key": b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"}, "PEM"),
        ({"private_key": 42}, "private_key"),
        ({"algorithm": "rsa-sha1"}, "algorithm"),
        ({"algorithm": "ed25519-sha256"}, "does not fit"),
        ({"headers": ["To"]}, "From"),
        ({"headers": "From"}, "headers"),
        ({"headers": ["From", "Bétreff"]}, "headers"),
    ],
)
def test_bad_settings_are_configuration_errors_when_it_is_made(
    arguments: dict[str, Any], match: str
) -> None:
    """Selector, domain, key, algorithm and headers are checked at once, with a clear error."""
    private, _ = KEYS["rsa-sha256"]()
    options: dict[str, Any] = {"selector": SELECTOR, "domain": DOMAIN, "private_key": private}

    with pytest.raises(ConfigurationError, match=match):
        DKIMSigner(**{**options, **arguments})


#: A 512-bit RSA key (test data only, made by `openssl genrsa 512`): too short for DKIM.
SHORT_RSA_KEY = b"""-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAtK41ohv0zGLAe4xP
wj79w9BoWTOmWMGcDkA5CCzQMEQaVVikkDX47XAyexM5N+x+Z+9WQ/aHMa02s1AO
yu1V+QIDAQABAkAaVvM2qMCtMxBAcpoGBUzVSQKNTnxHoCHx6ebmjDHldylQQpWb
ve1z9HuaycvRXgPP9w7k+Alcx3Lhf+Os72EpAiEA5aXMtigtvvZMoI5iEDB8AAid
54y0f7FtxwAnXGxSUw8CIQDJae+PD5E5bsD52vhCE/vnTWVKmGsteXlE6NXsEGOm
dwIhANpODphrAXGy+Yz3TUlOjdIKXvEq1Ls+k7jE8KXvYyMJAiEAvEtBHelbxul3
lx3SgVPVZ8O/MiGT8QtjB7z0YKBhyLkCIAiIVWwYYJ9/j4sah/1eL3FWJ3L1Q8Un
Hw/nRNsIvtlO
-----END PRIVATE KEY-----
"""


def test_a_short_rsa_key_is_refused_and_the_repr_hides_the_key() -> None:
    """Receivers ignore RSA keys under 1024 bits, so the signer refuses them (saying how big
    to make one); its repr never shows the private key."""
    private, _ = KEYS["rsa-sha256"]()

    signer = DKIMSigner(SELECTOR, DOMAIN, private.decode("ascii"))

    with pytest.raises(ConfigurationError, match=r"512-bit.*2048"):
        DKIMSigner(SELECTOR, DOMAIN, SHORT_RSA_KEY)
    assert "PRIVATE" not in repr(signer)
    assert "DKIMSigner(selector='mail2026', domain='app.example'" in repr(signer)


def test_without_a_transport_it_only_signs() -> None:
    """send() without a transport says how to give it one."""
    private, _ = KEYS["ed25519-sha256"]()
    envelope = Envelope(sender="a@app.example", recipients=("b@example.com",), data=b"x\r\n")

    with pytest.raises(ConfigurationError, match="transport="):
        DKIMSigner(SELECTOR, DOMAIN, private).send(envelope)


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    """A Postfix of the test's own (see tests/postfix_support.py), removed after."""
    reason = unavailable_reason()
    if reason is not None:
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = Postfix()
    try:
        yield server.start()
    finally:
        server.remove()


@pytest.mark.postfix
def test_both_signatures_verify_after_postfix_delivered_an_smtputf8_message(
    postfix: Postfix, builder: MessageBuilder
) -> None:
    """A real MTA in between: Postfix takes an SMTPUTF8 message with an RSA and an Ed25519
    signature (one signer wrapping the other), adds its own trace headers and delivers it;
    both signatures verify in the delivered file."""
    rsa_private, rsa_record = KEYS["rsa-sha256"]()
    ed_private, ed_record = KEYS["ed25519-sha256"]()
    records = {f"rsa._domainkey.{DOMAIN}": rsa_record, f"ed._domainkey.{DOMAIN}": ed_record}
    smtp = SMTPTransport(postfix.settings())
    signer = DKIMSigner(
        "rsa", DOMAIN, rsa_private, transport=DKIMSigner("ed", DOMAIN, ed_private, transport=smtp)
    )
    message = builder.build("reset_password", to="张三 <用户@mail.test>", context=RESET)

    with SyncMailer(signer) as mailer:
        mailer.send(message).result(timeout=30)
    postfix.wait_delivered(1, timeout=30)
    [delivered] = list((postfix.maildir / "new").iterdir())
    raw = delivered.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    checker = dkim.DKIM(raw)

    assert raw.startswith(b"Return-Path:")  # Postfix's own headers came first
    assert [True, True] == [checker.verify(idx=i, dnsfunc=dns(records)) for i in (0, 1)]
    assert "用户@mail.test" in raw.decode("utf-8")
