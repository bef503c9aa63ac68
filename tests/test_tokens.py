"""TokenService: signed, expiring, purpose- and state-bound tokens, and what is thrown at them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailreset import (
    Claims,
    ConfigurationError,
    ExpiredToken,
    InvalidToken,
    MailresetError,
    StaleToken,
    TokenService,
)
from mailreset.tokens import MAX_TOKEN_LENGTH

KEY = "pA7v0dKj3W6mXq9Yz2Lb5Nc8Rf1Th4Ug7Ie0Oa3Sd6"
OLD_KEY = "old-kJ3n5Bv8Cx1Zl4Mq7Wp0Ro2Ty5Ue8Ia1Sd4Fg7"
OTHER_KEY = "other-Qw3Er6Ty9Ui2Op5As8Df1Gh4Jk7Lz0Xc3Vb6"
STATE = "pbkdf2_sha256$600000$salt$hash-of-the-password"
NEW_STATE = "pbkdf2_sha256$600000$salt2$hash-of-the-new-password"
START = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
RSA_PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC2bAiFFm1oC6iLKBR2CE6vLTxK
9Ovg6D2n3w51xyAp7Y5Sk89YnaUD7/U7ozKpJflwJVeBoNuWLXfqlvuLfBZ/91K6
SjJelz5rCVwfDWpVNoKGhAaMhiCQYjaxC6EgMeLgtZeq7ApsFdvNd5KR9p/hVSC8
vhuNVYwwW2dEvS4OCwIDAQAB
-----END PUBLIC KEY-----
"""


class SteppingClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def service(clock: SteppingClock) -> TokenService:
    return TokenService(KEY, clock=clock)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload))


def _sign(header: dict[str, Any], payload: dict[str, Any] | bytes, secret: str | bytes) -> str:
    """A token built by hand, HMAC-SHA256 over whatever header and payload (JSON of it, or the
    bytes given) we like."""
    raw = secret.encode() if isinstance(secret, str) else secret
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(body)}"
    signature = hmac.digest(raw, signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(signature)}"


def _resign(token: str, secret: str = KEY, **changes: Any) -> str:
    """The token with payload claims changed (None removes one), signed again with secret."""
    header, payload = _parts(token)
    payload.update(changes)
    payload = {name: value for name, value in payload.items() if value is not None}
    return _sign(header, payload, secret)


# -- issuing and verifying ------------------------------------------------------------------


def test_verify_returns_the_claims_the_token_was_issued_with(service: TokenService) -> None:
    """A fresh token verifies to its subject, purpose, times and extra claims."""
    token = service.issue("reset_password", 42, extra={"email": "ada@example.test"})

    expected = Claims(
        subject="42",
        purpose="reset_password",
        issued_at=START,
        expires_at=START + timedelta(seconds=600),
        extra={"email": "ada@example.test"},
    )
    assert expected == service.verify(token, "reset_password")


def test_verifying_consumes_nothing(service: TokenService) -> None:
    """A link scanner fetching the link first does not burn it: verify twice, same claims."""
    token = service.issue("reset_password", "ada", bind=STATE)

    first = service.verify(token, "reset_password", bind=STATE)

    assert first == service.verify(token, "reset_password", bind=STATE)


def test_claims_are_frozen_and_extra_is_read_only(service: TokenService) -> None:
    """Claims cannot be changed after verification, nor can their extra mapping."""
    claims = service.verify(service.issue("p", 1, extra={"a": 1}), "p")

    with pytest.raises(AttributeError):
        claims.subject = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        claims.extra["a"] = 2  # type: ignore[index]


def test_verify_accepts_the_token_as_ascii_bytes(service: TokenService) -> None:
    """A token handed over as bytes verifies like the same token as str."""
    token = service.issue("p", 1)

    assert service.verify(token, "p") == service.verify(token.encode(), "p")


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_every_hmac_algorithm_round_trips(algorithm: str, clock: SteppingClock) -> None:
    """HS256, HS384 and HS512 services each verify their own tokens."""
    service = TokenService(KEY * 2, algorithm=algorithm, clock=clock)
    token = service.issue("p", 7)

    assert algorithm == _parts(token)[0]["alg"]
    assert "7" == service.verify(token, "p").subject


# -- time -----------------------------------------------------------------------------------


def test_a_token_is_valid_until_its_last_second(
    service: TokenService, clock: SteppingClock
) -> None:
    """max_age seconds after issue the token expires, not a moment before."""
    token = service.issue("p", 1)

    clock.advance(599.9)
    assert "1" == service.verify(token, "p").subject
    clock.advance(0.1)
    with pytest.raises(ExpiredToken) as caught:
        service.verify(token, "p")
    assert START + timedelta(seconds=600) == caught.value.expired_at


def test_leeway_and_per_token_max_age(clock: SteppingClock) -> None:
    """issue(max_age=) overrides the default lifetime, leeway extends it; both take timedelta."""
    service = TokenService(KEY, clock=clock, leeway=timedelta(seconds=30))
    token = service.issue("p", 1, max_age=timedelta(minutes=1))

    clock.advance(89)
    assert START + timedelta(minutes=1) == service.verify(token, "p").expires_at
    clock.advance(1)
    with pytest.raises(ExpiredToken):
        service.verify(token, "p")


def test_expired_wins_over_stale_and_skips_the_state_lookup(
    service: TokenService, clock: SteppingClock
) -> None:
    """An expired token whose state also changed is reported expired, without calling bind."""
    token = service.issue("reset_password", 1, bind=STATE)
    looked_up: list[str] = []

    def current_state(subject: str) -> str:
        looked_up.append(subject)
        return NEW_STATE

    clock.advance(3600)
    with pytest.raises(ExpiredToken):
        service.verify(token, "reset_password", bind=current_state)
    assert [] == looked_up


def test_a_naive_clock_is_a_configuration_error() -> None:
    """A clock returning a naive datetime is refused with a message naming the clock."""
    service = TokenService(KEY, clock=lambda: datetime(2030, 1, 1))

    with pytest.raises(ConfigurationError, match="clock"):
        service.issue("p", 1)


# -- binding --------------------------------------------------------------------------------


def test_a_changed_state_makes_the_token_stale(service: TokenService) -> None:
    """After the password hash changes, the token raises StaleToken: single use, no database."""
    token = service.issue("reset_password", 1, bind=STATE)

    with pytest.raises(StaleToken):
        service.verify(token, "reset_password", bind=NEW_STATE)


def test_bind_may_be_a_lookup_by_subject(service: TokenService) -> None:
    """bind= as a callable receives the subject and returns the current state."""
    token = service.issue("reset_password", 1, bind=STATE)
    states = {"1": STATE}

    assert "1" == service.verify(token, "reset_password", bind=states.get).subject


def test_the_token_never_carries_the_bound_state(service: TokenService) -> None:
    """Only a short digest of the state is in the payload, not the state or any part of it."""
    token = service.issue("reset_password", 1, bind=STATE)
    _, payload = _parts(token)

    assert STATE not in json.dumps(payload)
    assert "pbkdf2" not in json.dumps(payload)
    assert 16 == len(payload["bnd"])  # 96 bits


def test_the_state_digest_is_keyed(clock: SteppingClock) -> None:
    """Two services with different keys compute different digests for the same state."""
    ours = TokenService(KEY, clock=clock).issue("p", 1, bind=STATE)
    theirs = TokenService(OTHER_KEY, clock=clock).issue("p", 1, bind=STATE)

    assert _parts(ours)[1]["bnd"] != _parts(theirs)[1]["bnd"]


def test_binding_is_part_of_the_token(service: TokenService) -> None:
    """A bound token needs bind= and an unbound one refuses it: both are InvalidToken."""
    bound = service.issue("p", 1, bind=STATE)
    unbound = service.issue("p", 1)

    with pytest.raises(InvalidToken, match="bind") as without:
        service.verify(bound, "p")
    with pytest.raises(InvalidToken, match="bind") as with_:
        service.verify(unbound, "p", bind=STATE)
    assert (InvalidToken, InvalidToken) == (type(without.value), type(with_.value))


# -- rotation -------------------------------------------------------------------------------


def test_rotation_first_key_signs_every_key_verifies(clock: SteppingClock) -> None:
    """After rotating, old tokens still verify and new ones carry the new key's kid."""
    before = TokenService(OLD_KEY, clock=clock)
    after = TokenService([KEY, OLD_KEY], clock=clock)
    old_token = before.issue("p", 1, bind=STATE)
    new_token = after.issue("p", 2)

    assert "1" == after.verify(old_token, "p", bind=STATE).subject
    assert _parts(old_token)[0]["kid"] != _parts(new_token)[0]["kid"]
    assert _parts(new_token)[0]["kid"] == _parts(TokenService(KEY).issue("p", 1))[0]["kid"]
    with pytest.raises(InvalidToken, match="kid"):
        before.verify(new_token, "p")


def test_the_kid_reveals_nothing_of_the_key(service: TokenService) -> None:
    """The kid is a short label, not the key or a prefix of it."""
    kid = _parts(service.issue("p", 1))[0]["kid"]

    assert 8 == len(kid)
    assert kid not in KEY
    assert kid not in _b64(KEY.encode())


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"secret_key": "short"}, "secrets.token_urlsafe"),
        ({"secret_key": b"x" * 31}, "at least 32"),
        ({"secret_key": b"x" * 47, "algorithm": "HS384"}, r"at least 48.*token_urlsafe\(48\)"),
        ({"secret_key": b"x" * 63, "algorithm": "HS512"}, "at least 64"),
        ({"secret_key": []}, "secret_key"),
        ({"secret_key": [KEY, 42]}, r"secret_key\[1\]"),
        ({"secret_key": [KEY, KEY]}, "same key twice"),
        ({"secret_key": 12345}, "secret_key"),
        ({"secret_key": RSA_PUBLIC_PEM}, "HMAC secret"),
        ({"algorithm": "none"}, "algorithm"),
        ({"algorithm": "RS256"}, "algorithm"),
        ({"algorithm": "hs256"}, "algorithm"),
        ({"algorithm": ["HS256"]}, "algorithm"),
        ({"max_age": 0}, "max_age"),
        ({"max_age": -5}, "max_age"),
        ({"max_age": True}, "max_age"),
        ({"max_age": "600"}, "max_age"),
        ({"max_age": float("inf")}, "max_age"),
        ({"leeway": -1}, "leeway"),
        ({"leeway": timedelta(seconds=-1)}, "leeway"),
        ({"issuer": ""}, "issuer"),
        ({"clock": "now"}, "clock"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict[str, Any], named: str) -> None:
    """Each unusable setting raises a ConfigurationError (a ValueError) that names it."""
    arguments: dict[str, Any] = {"secret_key": KEY, **kwargs}

    with pytest.raises(ConfigurationError, match=named) as caught:
        TokenService(**arguments)
    assert isinstance(caught.value, ValueError)


def test_repr_never_shows_a_key() -> None:
    """The service's repr shows its settings and key ids but no secret."""
    text = repr(TokenService([KEY, OLD_KEY], issuer="app"))

    assert "TokenService(algorithm='HS256', max_age=600" in text
    assert KEY not in text
    assert OLD_KEY not in text
    assert KEY[:8] not in text


def _nested(depth: int) -> list[Any]:
    """A list nested ``depth`` levels deep (deeper than JSON encoding recurses)."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "kwargs",
    [
        {"purpose": ""},
        {"purpose": 3},
        {"subject": ""},
        {"subject": None},
        {"subject": True},
        {"bind": 12},
        {"max_age": 0},
        {"extra": {"exp": 1}},
        {"extra": {"pur": "other"}},
        {"extra": {1: "x"}},
        {"extra": {"when": datetime.now(timezone.utc)}},
        {"extra": {"nan": float("nan")}},
        {"extra": {"inf": float("inf")}},
        {"extra": {"deep": _nested(5000)}},
        {"extra": {"blob": "x" * MAX_TOKEN_LENGTH}},
    ],
)
def test_bad_issue_arguments_are_refused(service: TokenService, kwargs: dict[str, Any]) -> None:
    """issue() refuses arguments it cannot sign faithfully, or a token verify would refuse."""
    arguments: dict[str, Any] = {"purpose": "p", "subject": 1, **kwargs}

    with pytest.raises(ConfigurationError):
        service.issue(**arguments)


def test_bad_verify_arguments_are_the_callers_error(service: TokenService) -> None:
    """A purpose or bind of the wrong type is a ConfigurationError, not a verdict on the token."""
    token = service.issue("p", 1, bind=STATE)

    with pytest.raises(ConfigurationError, match="purpose"):
        service.verify(token, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="bind"):
        service.verify(token, "p", bind=12)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="bind"):
        service.verify(token, "p", bind=lambda subject: 12)  # type: ignore[arg-type]


# -- attacks --------------------------------------------------------------------------------

Attack = Callable[[TokenService, SteppingClock], tuple[str, dict[str, Any]]]


def _valid(service: TokenService) -> str:
    return service.issue("reset_password", 1, bind=STATE)


def _kid(service: TokenService) -> str:
    return str(_parts(_valid(service))[0]["kid"])


def _claims(service: TokenService, **changes: Any) -> dict[str, Any]:
    payload = _parts(_valid(service))[1]
    payload.update(changes)
    return payload


def _alg_none(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header = {"alg": "none", "kid": _kid(service), "typ": "JWT"}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(service)).encode())}"
    )
    return f"{signing_input}.", {"bind": STATE}


def _alg_none_with_signature(
    service: TokenService, clock: SteppingClock
) -> tuple[str, dict[str, Any]]:
    header = {"alg": "None", "kid": _kid(service)}
    return _sign(header, _claims(service), KEY), {"bind": STATE}


def _confusion_public_key(
    service: TokenService, clock: SteppingClock
) -> tuple[str, dict[str, Any]]:
    header = {"alg": "HS256", "kid": _kid(service), "typ": "JWT"}
    return _sign(header, _claims(service), RSA_PUBLIC_PEM), {"bind": STATE}


def _rs256_header(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header = {"alg": "RS256", "kid": _kid(service), "typ": "JWT"}
    return _sign(header, _claims(service), KEY), {"bind": STATE}


def _es256_header(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header = {"alg": "ES256", "typ": "JWT"}
    return _sign(header, _claims(service), RSA_PUBLIC_PEM), {"bind": STATE}


def _other_hmac(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    token = TokenService(KEY * 2, algorithm="HS512", clock=clock).issue("reset_password", 1)
    return token, {}


def _no_kid(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _sign({"alg": "HS256", "typ": "JWT"}, _claims(service), KEY), {"bind": STATE}


def _extra_header(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header = {"alg": "HS256", "kid": _kid(service), "jku": "https://evil.example/keys"}
    return _sign(header, _claims(service), KEY), {"bind": STATE}


def _expired(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    token = _valid(service)
    clock.advance(601)
    return token, {"bind": STATE}


def _forged_and_expired(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    token = TokenService(OTHER_KEY, clock=clock).issue("reset_password", 1, bind=STATE)
    clock.advance(601)
    return token, {"bind": STATE}


def _not_yet_valid(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    later = int((START + timedelta(hours=1)).timestamp())
    return _resign(_valid(service), nbf=later), {"bind": STATE}


def _issued_in_future(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    later = int((START + timedelta(hours=1)).timestamp())
    return _resign(_valid(service), iat=later, exp=later + 600), {"bind": STATE}


def _wrong_purpose(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return service.issue("verify_email", 1, bind=STATE), {"bind": STATE}


def _wrong_key(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _valid(TokenService(OTHER_KEY, clock=clock)), {"bind": STATE}


def _rotated_out(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _valid(TokenService([OLD_KEY, KEY], clock=clock)), {"bind": STATE}


def _kid_swapped(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    old = _valid(TokenService([OLD_KEY, KEY], clock=clock))
    header, payload = _parts(old)
    header["kid"] = _kid(service)
    return _sign(header, payload, OLD_KEY), {"bind": STATE}


def _bind_changed(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _valid(service), {"bind": NEW_STATE}


def _user_gone(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _valid(service), {"bind": lambda subject: None}


def _tampered_payload(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header, _, signature = _valid(service).split(".")
    payload = _b64(json.dumps(_claims(service, sub="2")).encode())
    return f"{header}.{payload}.{signature}", {"bind": STATE}


def _tampered_signature(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    token = _valid(service)
    return token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB"), {"bind": STATE}


def _tampered_header(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    _, payload, signature = _valid(service).split(".")
    header = _b64(json.dumps({"alg": "HS256", "kid": _kid(service), "typ": "JWS"}).encode())
    return f"{header}.{payload}.{signature}", {"bind": STATE}


def _swapped_segments(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header, payload, signature = _valid(service).split(".")
    return f"{payload}.{header}.{signature}", {"bind": STATE}


def _repadded(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header, payload, signature = _valid(service).split(".")
    return f"{header}.{payload}.{signature}=", {"bind": STATE}


def _truncated(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _valid(service)[:-1], {"bind": STATE}


def _wrong_issuer(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _resign(_valid(service), iss="https://other.example"), {"bind": STATE}


def _no_subject(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _resign(_valid(service), sub=None), {"bind": STATE}


def _numeric_subject(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _resign(_valid(service), sub=1), {"bind": STATE}


def _string_expiry(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _resign(_valid(service), exp="tomorrow"), {"bind": STATE}


def _huge_expiry(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    return _resign(_valid(service), exp=10**30), {"bind": STATE}


def _payload_not_an_object(
    service: TokenService, clock: SteppingClock
) -> tuple[str, dict[str, Any]]:
    header = _parts(_valid(service))[0]
    return _sign(header, [1, 2], KEY), {"bind": STATE}  # type: ignore[arg-type]


def _payload_not_json(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header = _parts(_valid(service))[0]
    return _sign(header, b'{"sub": "1", "exp": NaN', KEY), {"bind": STATE}


def _payload_not_utf8(service: TokenService, clock: SteppingClock) -> tuple[str, dict[str, Any]]:
    header = _parts(_valid(service))[0]
    return _sign(header, b'{"sub": "\xff"}', KEY), {"bind": STATE}


def _payload_nested_too_deep(
    service: TokenService, clock: SteppingClock
) -> tuple[str, dict[str, Any]]:
    """Signed JSON nested deeper than the parser recurses, still under the length cap."""
    header = _parts(_valid(service))[0]
    return _sign(header, b'{"a":' + b"[" * 1400 + b"]" * 1400 + b"}", KEY), {"bind": STATE}


ATTACKS: list[tuple[Attack, type[InvalidToken]]] = [
    (_alg_none, InvalidToken),
    (_alg_none_with_signature, InvalidToken),
    (_confusion_public_key, InvalidToken),
    (_rs256_header, InvalidToken),
    (_es256_header, InvalidToken),
    (_other_hmac, InvalidToken),
    (_no_kid, InvalidToken),
    (_extra_header, InvalidToken),
    (_expired, ExpiredToken),
    (_forged_and_expired, InvalidToken),
    (_not_yet_valid, InvalidToken),
    (_issued_in_future, InvalidToken),
    (_wrong_purpose, InvalidToken),
    (_wrong_key, InvalidToken),
    (_rotated_out, InvalidToken),
    (_kid_swapped, InvalidToken),
    (_bind_changed, StaleToken),
    (_user_gone, InvalidToken),
    (_tampered_payload, InvalidToken),
    (_tampered_signature, InvalidToken),
    (_tampered_header, InvalidToken),
    (_swapped_segments, InvalidToken),
    (_repadded, InvalidToken),
    (_truncated, InvalidToken),
    (_wrong_issuer, InvalidToken),
    (_no_subject, InvalidToken),
    (_numeric_subject, InvalidToken),
    (_string_expiry, InvalidToken),
    (_huge_expiry, InvalidToken),
    (_payload_not_an_object, InvalidToken),
    (_payload_not_json, InvalidToken),
    (_payload_not_utf8, InvalidToken),
    (_payload_nested_too_deep, InvalidToken),
]


@pytest.mark.parametrize(("attack", "expected"), ATTACKS, ids=[a.__name__[1:] for a, _ in ATTACKS])
def test_attack_is_refused_with_the_right_error(
    attack: Attack, expected: type[InvalidToken], service: TokenService, clock: SteppingClock
) -> None:
    """Each attack raises exactly the token error an app would show for it, never succeeds."""
    token, arguments = attack(service, clock)

    with pytest.raises(InvalidToken) as caught:
        service.verify(token, "reset_password", **arguments)
    assert expected is type(caught.value)


def test_a_token_with_the_typ_header_of_earlier_versions_still_verifies(
    service: TokenService,
) -> None:
    """Earlier versions wrote ``"typ": "JWT"``; their unbound tokens verify (through the
    header that is read rather than recognised byte for byte)."""
    token = service.issue("reset_password", 1)
    header, payload = _parts(token)
    with_typ = _sign({**header, "typ": "JWT"}, payload, KEY)

    assert "typ" not in header
    assert "1" == service.verify(with_typ, "reset_password").subject


def test_the_untouched_attack_baseline_verifies(service: TokenService) -> None:
    """The token the attacks start from is itself good, so each attack's change is what fails."""
    assert "1" == service.verify(_valid(service), "reset_password", bind=STATE).subject


# -- any input at all -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        0,
        4.2,
        object(),
        ["a.b.c"],
        bytearray(b"a.b.c"),
        b"\xff\xfe.\x00.a",
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "é.é.é",
        "eyJ.eyJ.\x00",
        " eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e30.AAAA\n",
        "e30.e30.AAAA",
        "W10.e30.AAAA",
        "bnVsbA.e30.AAAA",
        "A" * 5,
    ],
)
def test_garbage_is_an_invalid_token(service: TokenService, garbage: object) -> None:
    """Wrong types, empty, non-ASCII and malformed strings all raise plain InvalidToken."""
    with pytest.raises(InvalidToken) as caught:
        service.verify(garbage, "p")
    assert InvalidToken is type(caught.value)


@pytest.mark.parametrize("size", [MAX_TOKEN_LENGTH + 1, 1 << 20])
def test_oversized_input_is_refused_by_the_length_cap(service: TokenService, size: int) -> None:
    """A megabyte of token-shaped garbage is refused by length alone, before any decoding."""
    garbage = "eyJ" + "A" * size + ".e30.AAAA"

    with pytest.raises(InvalidToken, match=f"longer than {MAX_TOKEN_LENGTH}"):
        service.verify(garbage, "p")
    with pytest.raises(InvalidToken, match="too long"):
        service.verify(garbage.encode(), "p")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet=B64URL + ".=", max_size=400),
        st.binary(max_size=300),
        st.integers(),
        st.floats(),
        st.none(),
    )
)
def test_arbitrary_input_only_raises_invalid_token(garbage: object) -> None:
    """Whatever arrives, verify raises an InvalidToken (or subclass), never anything else."""
    service = TokenService(KEY, clock=SteppingClock())

    with pytest.raises(InvalidToken):
        service.verify(garbage, "reset_password", bind=STATE)


def _mutations(token: str) -> st.SearchStrategy[str]:
    positions = st.integers(min_value=0, max_value=len(token) - 1)
    characters = st.sampled_from(B64URL + ".=+/ ")
    replace = st.tuples(positions, characters).map(
        lambda m: token[: m[0]] + m[1] + token[m[0] + 1 :]
    )
    insert = st.tuples(positions, characters).map(lambda m: token[: m[0]] + m[1] + token[m[0] :])
    delete = positions.map(lambda i: token[:i] + token[i + 1 :])
    truncate = positions.map(lambda i: token[:i])
    swap = st.permutations(token.split(".")).map(".".join)
    pad = st.sampled_from(["=", "==", "\n", " "]).map(lambda suffix: token + suffix)
    # Flip the spare low bits of a segment's last character: same bytes once decoded.
    last_char = st.sampled_from(B64URL).map(lambda c: token[:-1] + c)
    return st.one_of(replace, insert, delete, truncate, swap, pad, last_char).filter(
        lambda mutated: mutated != token
    )


TOKEN_TO_MUTATE = TokenService(KEY, clock=SteppingClock()).issue(
    "reset_password", 1, bind=STATE, extra={"n": 1}
)


@settings(max_examples=300, deadline=None)
@given(_mutations(TOKEN_TO_MUTATE))
def test_a_mutated_token_never_verifies(mutated: str) -> None:
    """Any one-character change, truncation, padding or reordering of a real token fails."""
    service = TokenService(KEY, clock=SteppingClock())
    assert "1" == service.verify(TOKEN_TO_MUTATE, "reset_password", bind=STATE).subject

    with pytest.raises(InvalidToken) as caught:
        service.verify(mutated, "reset_password", bind=STATE)
    assert InvalidToken is type(caught.value)


def test_no_other_error_escapes_for_a_hostile_signed_payload(service: TokenService) -> None:
    """Even a key holder's deeply nested or huge-number payload is only an InvalidToken."""
    header = _parts(_valid(service))[0]
    nested = "[" * 100_000 + "]" * 100_000
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(nested.encode())}"
    deep = f"{signing_input}.{_b64(hmac.digest(KEY.encode(), signing_input.encode(), 'sha256'))}"

    with pytest.raises(InvalidToken):
        service.verify(deep, "reset_password")
    with pytest.raises(InvalidToken):
        service.verify(_resign(_valid(service), exp=float("inf")), "reset_password", bind=STATE)


def test_every_token_error_is_a_mailreset_error() -> None:
    """Apps can catch InvalidToken for all three outcomes, or MailresetError for everything."""
    assert issubclass(ExpiredToken, InvalidToken)
    assert issubclass(StaleToken, InvalidToken)
    assert issubclass(InvalidToken, MailresetError)


# -- interoperability -----------------------------------------------------------------------


def test_plain_pyjwt_verifies_our_token_and_reads_standard_claims() -> None:
    """A token from TokenService decodes with bare PyJWT given the key; its claims are standard."""
    service = TokenService(KEY, issuer="https://app.example")
    token = service.issue("reset_password", 42, bind=STATE)

    payload = jwt.decode(
        token,
        KEY,
        algorithms=["HS256"],
        issuer="https://app.example",
        options={"require": ["exp", "iat", "sub", "iss"]},
    )
    header = jwt.get_unverified_header(token)

    assert "42" == payload["sub"]
    assert isinstance(payload["exp"], int)
    assert isinstance(payload["iat"], int)
    assert 600 == payload["exp"] - payload["iat"]
    assert "reset_password" == payload["pur"]
    assert {"alg": "HS256", "kid": header["kid"]} == header
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, OTHER_KEY, algorithms=["HS256"])


def test_pyjwt_sees_our_expired_token_as_expired() -> None:
    """The exp we write means the same to PyJWT: a token issued in 2020 is expired now."""
    service = TokenService(KEY, clock=SteppingClock(datetime(2020, 1, 1, tzinfo=timezone.utc)))
    token = service.issue("p", 1)

    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, KEY, algorithms=["HS256"])


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("length", [64, 65, 128, 129, 300])
def test_pyjwt_verifies_every_algorithm_and_key_length(algorithm: str, length: int) -> None:
    """Our signatures are standard HMAC for each algorithm, short keys and keys past a block."""
    key = (KEY * 10)[:length]
    token = TokenService(key, algorithm=algorithm).issue("p", "ada", extra={"n": [1, "é"]})

    payload = jwt.decode(token, key, algorithms=[algorithm])

    assert ("ada", [1, "é"]) == (payload["sub"], payload["n"])


@pytest.mark.parametrize("subject", ['a"b\\c', "é\u2028\x00\n", "用户-7", "\ud800"])
def test_any_subject_text_round_trips(service: TokenService, subject: str) -> None:
    """Quotes, control characters, non-ASCII and lone surrogates come back unchanged."""
    token = service.issue("p", subject, extra={subject: subject})

    claims = service.verify(token, "p")

    assert (subject, {subject: subject}) == (claims.subject, dict(claims.extra))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
CLAIM_NAMES = st.sampled_from(["sub", "iat", "exp", "nbf", "iss", "pur", "bnd", "x"])


@settings(max_examples=150, deadline=None)
@given(
    header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64"]), JSON),
    payload=st.dictionaries(CLAIM_NAMES, JSON) | JSON,
    good_header=st.booleans(),
)
def test_a_key_holders_odd_payload_only_raises_token_errors(
    header: dict[str, Any], payload: Any, good_header: bool
) -> None:
    """Correctly signed but odd headers and claims still end in a token error or in Claims."""
    service = TokenService(KEY, clock=SteppingClock())
    if good_header:
        header = _parts(_valid(service))[0]
    token = _sign(header, payload, KEY)

    try:
        claims = service.verify(token, "reset_password", bind=STATE)
    except InvalidToken:
        return
    assert isinstance(claims, Claims)
