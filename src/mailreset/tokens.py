"""Signed, expiring, purpose-bound tokens for reset links: compact JWTs, HMAC only.

A token is a standard JWS (``header.payload.signature``, base64url, HS256/384/512), so any JWT
library can read it given the key. The header names the algorithm and a ``kid`` derived from
the signing key; the payload holds the standard ``sub``, ``iat``, ``exp`` (and ``iss`` when
configured), the private ``pur`` (the purpose) and, for bound tokens, ``bnd`` (a keyed
96-bit BLAKE2b digest of the user state, never the state itself). Anything in ``extra`` sits
beside them.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, TypeAlias

import attrs
import jwt

from mailreset._clock import Clock
from mailreset._convert import duration, is_number, is_whole
from mailreset._jwt_errors import JWT_ERRORS, invalid_token
from mailreset.errors import ConfigurationError, ExpiredToken, InvalidToken, StaleToken

__all__ = ["Claims", "TokenService"]

#: Shortest key accepted for HS256, in bytes (of its UTF-8 encoding for a str). RFC 7518
#: section 3.2 asks for keys at least as long as the hash: 48 bytes for HS384, 64 for HS512.
MIN_KEY_BYTES = 32
#: Longest token ``verify`` looks at; longer input is refused before any decoding, and
#: ``issue`` refuses to make a token it could not verify.
MAX_TOKEN_LENGTH = 4096

Secret: TypeAlias = str | bytes
State: TypeAlias = str | bytes
Bind: TypeAlias = State | Callable[[str], State | None]
Seconds: TypeAlias = float | timedelta

_DIGEST_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_KEY_HINT = 'make one with: python -c "import secrets; print(secrets.token_urlsafe({}))"'
# Three non-empty base64url segments, no padding, nothing else: re-padded, whitespace-laden
# or otherwise "equivalent" spellings of a token are not the token.
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# The characters a canonical segment can end with, by its length modulo 4: after two
# characters of a group the low 4 bits are spare and must be zero, after three the low 2
# bits; one character alone is never a whole byte. Checked here because PyJWT's own checks
# move between versions: before 2.14 it decodes the other spellings (and skips characters
# outside the alphabet) to the same bytes, and it accepts "=" padding throughout.
_LAST = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    "",
    "AQgw",
    "AEIMQUYcgkosw048",
)
_RESERVED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "pur", "bnd"})
_HEADER_FIELDS = frozenset({"alg", "kid", "typ"})
_KID_BYTES = 6  # 48 bits: a label to pick the key, not a secret and not a security margin
# 96-bit digest of the bound state: it tells one state from the next (a forger needs the key
# anyway), and 12 bytes are 16 base64url characters with nothing left over.
_BIND_BYTES = 12
_LATEST = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime can hold
# PyJWT's JWS layer (jwt.PyJWS, public) makes and checks the signature, the algorithm and the
# header; the claims are ours to write and read. PyJWT's claim layer (jwt.encode/jwt.decode)
# would check only that our claims are present: it reads the wall clock itself (no clock can
# be injected), checks exp before anything of ours (a token for another purpose would be
# reported "expired" rather than invalid), cannot say when a token expired, and costs a
# seventh of an issue+verify for checks verify() makes anyway.
_JWS = jwt.PyJWS()
# The claims as PyJWT's encoder writes them (compact separators, ASCII), but strict: PyJWT's
# would write NaN and Infinity, which are not JSON. Made once, not on every call.
_encode_claims = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
# The claims are UTF-8 JSON (RFC 7519), read by one decoder made once: json.loads would also
# guess other encodings, and costs half as much again. Bytes that are not UTF-8 raise a
# UnicodeDecodeError (a ValueError); too deeply nested JSON raises RecursionError.
_decode_claims = json.JSONDecoder().decode
_JSON_ERRORS = (ValueError, RecursionError)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


_NOTHING: Mapping[str, Any] = MappingProxyType({})


def _readonly(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if type(value) is MappingProxyType:  # already read-only (verify builds it so)
        return value
    return MappingProxyType(dict(value)) if value else _NOTHING


@attrs.frozen(kw_only=True)
class Claims:
    """What a verified token says.

    Attributes:
        subject: the user id the token was issued for, as a string.
        purpose: what the token is for (``"reset_password"``, ...).
        issued_at: when it was issued (aware UTC).
        expires_at: when it stops being valid (aware UTC).
        extra: the application's own claims given to ``issue(extra=...)`` (read-only).

    .. versionadded:: 0.1
    """

    subject: str
    purpose: str
    issued_at: datetime
    expires_at: datetime
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_readonly, hash=False)


class _Key:
    """One secret, prepared once: its kid, the header segment PyJWT writes for it, its bind key."""

    __slots__ = ("bind_mac", "header", "headers", "kid", "secret")

    def __init__(self, secret: bytes, algorithm: str) -> None:
        self.secret = secret
        # The kid is a keyed hash of a constant: it names the key without revealing it.
        self.kid = _b64(hmac.digest(secret, b"mailreset kid", "sha256")[:_KID_BYTES])
        # The header segment of every token this key signs (PyJWT writes its header with
        # sorted keys, so it is the same each time): verify recognises it byte for byte and
        # skips parsing the header a second time. PyJWT's own key check runs here too: it
        # refuses PEM/SSH/DER public keys and JWK documents as HMAC secrets (using one would
        # open the door to algorithm-confusion attacks).
        # No "typ": it is optional (RFC 7519 section 5.1), and every character of a token costs
        # PyJWT time on decode.
        #: the header fields of its tokens beyond "alg", for PyJWS.encode
        self.headers: dict[str, Any] = {"kid": self.kid, "typ": None}
        sample = _JWS.encode(b"{}", secret, algorithm=algorithm, headers=self.headers)
        self.header = sample.partition(".")[0]
        # A separate key for state digests, derived from the secret, so a digest is never
        # something the signing key also produced for another input.
        bind_key = hmac.digest(secret, b"mailreset bind", "sha256")
        # Keyed BLAKE2b is a MAC by design (RFC 7693) and, keyed once and copied for each
        # digest, costs a third of an HMAC-SHA256 on the verify path.
        self.bind_mac = hashlib.blake2b(key=bind_key, digest_size=_BIND_BYTES)

    def state_digest(self, purpose: str, subject: str, state: bytes) -> str:
        # Length-prefixed, so no purpose/subject/state split can collide with another.
        prefix = f"{len(purpose)}:{purpose}{len(subject)}:{subject}".encode(
            "utf-8", "surrogatepass"
        )
        mac = self.bind_mac.copy()
        mac.update(prefix + state)
        return _b64(mac.digest())


def _seconds(name: str, value: object, *, minimum: float) -> float:
    seconds = duration(name, value)
    if not math.isfinite(seconds) or seconds < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum:g} seconds, not {value!r}")
    return seconds


def _keys(secret_key: object, algorithm: str) -> list[_Key]:
    shortest = max(MIN_KEY_BYTES, _DIGEST_BYTES[algorithm])
    hint = _KEY_HINT.format(shortest)
    secrets = [secret_key] if isinstance(secret_key, (str, bytes)) else secret_key
    if not isinstance(secrets, Sequence) or not secrets:
        raise ConfigurationError(
            "secret_key must be a str or bytes, or a non-empty sequence of them "
            f"(the first signs, all verify); {hint}"
        )
    keys: list[_Key] = []
    for position, secret in enumerate(secrets):
        name = "secret_key" if isinstance(secret_key, (str, bytes)) else f"secret_key[{position}]"
        if not isinstance(secret, (str, bytes)):
            raise ConfigurationError(f"{name} must be a str or bytes, not {type(secret).__name__}")
        raw = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
        if len(raw) < shortest:
            raise ConfigurationError(
                f"{name} is {len(raw)} bytes; an {algorithm} key needs at least {shortest} "
                f"random bytes: {hint}"
            )
        try:
            keys.append(_Key(raw, algorithm))
        except jwt.PyJWTError as exc:
            raise ConfigurationError(f"{name} cannot be an HMAC secret: {exc}") from exc
    return keys


def _check_extra(extra: object) -> Mapping[str, Any]:
    if not isinstance(extra, Mapping):
        raise ConfigurationError(f"extra must be a mapping, not {type(extra).__name__}")
    if not all(isinstance(name, str) and name not in _RESERVED for name in extra):
        raise ConfigurationError(
            f"extra must have str keys other than the reserved {sorted(_RESERVED)}"
        )
    return extra


def _check_purpose(purpose: object) -> str:
    if not isinstance(purpose, str) or not purpose:
        raise ConfigurationError(f"purpose must be a non-empty str, not {purpose!r}")
    return purpose


def _state_bytes(state: object, name: str) -> bytes:
    if isinstance(state, str):
        return state.encode("utf-8", "surrogatepass")
    if isinstance(state, bytes):
        return state
    raise ConfigurationError(f"{name} must be a str or bytes, not {type(state).__name__}")


def _timestamp(payload: Mapping[str, Any], name: str) -> float:
    value = payload.get(name)
    if not is_number(value) or not 0 <= value <= _LATEST:
        raise InvalidToken(f"the token's {name!r} claim is not a date")
    return value


class TokenService:
    """Issues and verifies signed, expiring tokens bound to a purpose and, optionally, to state.

    Args:
        secret_key: a str or bytes of at least 32 bytes (48 for HS384, 64 for HS512), or a
            sequence of them for rotation: the first signs, every one verifies, and the
            token's ``kid`` header picks the key.
        max_age: default lifetime of a token, in seconds or as a timedelta.
        algorithm: ``"HS256"``, ``"HS384"`` or ``"HS512"``; tokens naming any other algorithm
            (``none``, RSA, EC, or another HMAC) are rejected.
        issuer: when set, written as ``iss`` and required on verification.
        leeway: clock skew tolerated on ``exp``, ``iat`` and ``nbf``, in seconds or a timedelta.
        clock: returns the current time as an aware UTC datetime (inject one in tests).

    Raises:
        ConfigurationError: a setting that cannot work, named in the message.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_algorithms",
        "_by_header",
        "_by_kid",
        "_clock",
        "_now",
        "_signer",
        "algorithm",
        "issuer",
        "leeway",
        "max_age",
    )

    def __init__(
        self,
        secret_key: Secret | Sequence[Secret],
        *,
        max_age: Seconds = 600,
        algorithm: str = "HS256",
        issuer: str | None = None,
        leeway: Seconds = 0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(algorithm, str) or algorithm not in _DIGEST_BYTES:
            raise ConfigurationError(
                f"algorithm must be one of HS256, HS384, HS512, not {algorithm!r}: "
                "mailreset signs with a shared secret only"
            )
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigurationError(f"issuer must be a non-empty str or None, not {issuer!r}")
        if clock is not None and not callable(clock):
            raise ConfigurationError(f"clock must be a callable returning a datetime: {clock!r}")
        #: the signing algorithm, and the only one accepted.
        self.algorithm = algorithm
        #: the ``iss`` claim written and required, or None.
        self.issuer = issuer
        #: default token lifetime, in seconds.
        self.max_age = _seconds("max_age", max_age, minimum=1)
        #: tolerated clock skew, in seconds.
        self.leeway = _seconds("leeway", leeway, minimum=0)
        self._clock = clock
        self._now: Callable[[], float] = time.time if clock is None else self._clock_now
        keys = _keys(secret_key, algorithm)
        self._signer = keys[0]
        self._by_kid = {key.kid: key for key in keys}
        if len(self._by_kid) != len(keys):
            raise ConfigurationError("secret_key lists the same key twice")
        self._by_header = {key.header: key for key in keys}
        self._algorithms = [algorithm]

    def __repr__(self) -> str:
        return (
            f"TokenService(algorithm={self.algorithm!r}, max_age={self.max_age:g}, "
            f"issuer={self.issuer!r}, leeway={self.leeway:g}, "
            f"keys={list(self._by_kid)!r})"
        )

    def _clock_now(self) -> float:
        assert self._clock is not None  # only installed as _now when a clock was given
        now = self._clock()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise ConfigurationError(f"clock must return an aware datetime, not {now!r}")
        return now.timestamp()

    def issue(
        self,
        purpose: str,
        subject: str | int,
        *,
        bind: State | None = None,
        max_age: Seconds | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Return a new token for ``subject`` (a user id) usable only for ``purpose``.

        Args:
            purpose: what the token is for; ``verify`` must name the same purpose.
            subject: the user id, int or str (stored as a str).
            bind: user state that must not change while the token lives (the password hash,
                the last login); the token carries a keyed digest of it, never the value.
            max_age: this token's lifetime, instead of the service's.
            extra: more claims (JSON values) returned in ``Claims.extra``; they are signed
                but readable by anyone holding the token, so keep secrets out.

        Raises:
            ConfigurationError: an argument that cannot be used, named in the message.
        """
        purpose = _check_purpose(purpose)
        if not (isinstance(subject, str) or is_whole(subject)) or subject == "":
            raise ConfigurationError(f"subject must be a non-empty str or an int: {subject!r}")
        sub = str(subject)
        lifetime = self.max_age if max_age is None else _seconds("max_age", max_age, minimum=1)
        issued = math.floor(self._now())
        payload: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + math.ceil(lifetime)}
        if self.issuer is not None:
            payload["iss"] = self.issuer
        payload["pur"] = purpose
        signer = self._signer
        if bind is not None:
            payload["bnd"] = signer.state_digest(purpose, sub, _state_bytes(bind, "bind"))
        if extra:
            payload.update(_check_extra(extra))
        try:
            claims = _encode_claims(payload).encode("ascii")
        # Only extra can hold what JSON cannot: other types, NaN, loops, too deep a nesting.
        except (TypeError, ValueError, RecursionError) as exc:
            raise ConfigurationError(f"extra must hold JSON values only: {exc}") from exc
        token = _JWS.encode(
            claims, signer.secret, algorithm=self.algorithm, headers=signer.headers
        )
        if len(token) > MAX_TOKEN_LENGTH:
            raise ConfigurationError(
                f"the token would be {len(token)} characters, over the {MAX_TOKEN_LENGTH} "
                "verify accepts: make extra smaller"
            )
        return token

    def verify(self, token: object, purpose: str, *, bind: Bind | None = None) -> Claims:
        """Return the claims of ``token`` if it is genuine, unexpired, for ``purpose`` and fresh.

        Args:
            token: whatever arrived (a str, normally); any other input is an ``InvalidToken``.
            purpose: the purpose the token must have been issued for.
            bind: the user's current state, or a callable ``subject -> state | None`` (None
                means the user is gone). Required for tokens issued with ``bind``, refused
                for tokens issued without. The callable runs only for genuine, unexpired
                tokens; its own exceptions propagate.

        Raises:
            ExpiredToken: genuine, for this purpose, but its time is up (``expired_at`` says
                when), whatever else may be true of it.
            StaleToken: genuine and unexpired, but the bound state changed (already used).
            InvalidToken: anything else: malformed, forged, another key, algorithm, purpose
                or issuer, not yet valid, or its user is gone.
            ConfigurationError: ``purpose`` or ``bind`` (not the token) cannot be used.

        Verifying consumes nothing: the same token verifies again until its state changes.
        """
        _check_purpose(purpose)
        if bind is not None and not callable(bind) and not isinstance(bind, (str, bytes)):
            raise ConfigurationError(f"bind must be a str, bytes or a callable, not {bind!r}")
        key, payload = self._open(token)

        # Past the signature: the payload is ours (or a key holder's); check it field by field.
        subject = payload.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token's subject (sub) is missing or not a string")
        issued = _timestamp(payload, "iat")
        expires = _timestamp(payload, "exp")
        not_before = _timestamp(payload, "nbf") if "nbf" in payload else None
        if payload.get("iss") != self.issuer:
            raise InvalidToken("the token comes from another issuer")
        if payload.get("pur") != purpose:
            raise InvalidToken(f"the token is not for {purpose!r}")
        digest = payload.get("bnd")
        if digest is None and bind is not None:
            raise InvalidToken("the token is not bound to any state, but bind= was given")
        if digest is not None and bind is None:
            raise InvalidToken("the token is bound to user state: pass bind= to verify it")
        if digest is not None and not isinstance(digest, str):
            raise InvalidToken("the token's state digest is malformed")

        now = self._now()
        if now >= expires + self.leeway:
            raise ExpiredToken(
                f"the token expired at {_utc(expires).isoformat()}",
                expired_at=_utc(expires),
            )
        if issued > now + self.leeway:
            raise InvalidToken("the token was issued in the future")
        if not_before is not None and not_before > now + self.leeway:
            raise InvalidToken(f"the token is not valid before {_utc(not_before).isoformat()}")
        extra = _NOTHING
        if not payload.keys() <= _RESERVED:
            extra = MappingProxyType(
                {name: value for name, value in payload.items() if name not in _RESERVED}
            )
        claims = Claims(
            subject=subject,
            purpose=purpose,
            issued_at=_utc(issued),
            expires_at=_utc(expires),
            extra=extra,
        )

        if digest is not None:
            state = bind(subject) if callable(bind) else bind
            if state is None:
                raise InvalidToken("the token's user no longer exists")
            expected = key.state_digest(purpose, subject, _state_bytes(state, "bind state"))
            if not (digest.isascii() and hmac.compare_digest(expected, digest)):
                raise StaleToken("the token was already used or superseded (its state changed)")
        return claims

    def _open(self, token: object) -> tuple[_Key, dict[str, Any]]:
        """Check the shape, the header and the signature; return the key and the payload."""
        if isinstance(token, bytes):
            if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
                raise InvalidToken("not a token: too long or not ASCII")
            token = token.decode("ascii")
        elif not isinstance(token, str):
            raise InvalidToken(f"not a token: a {type(token).__name__}, not a str")
        # The length cap comes first, so megabytes of garbage cost nothing but len().
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"not a token: longer than {MAX_TOKEN_LENGTH} characters")
        if _SHAPE.fullmatch(token) is None:
            raise InvalidToken("not a token: expected three base64url segments joined by dots")
        header, body, signature = token.split(".")
        if (
            header[-1] not in _LAST[len(header) % 4]
            or body[-1] not in _LAST[len(body) % 4]
            or signature[-1] not in _LAST[len(signature) % 4]
        ):
            raise InvalidToken("not a token: a segment is not canonical base64url")
        key = self._by_header.get(header) or self._key_for(token)
        try:
            claims = _JWS.decode(token, key.secret, algorithms=self._algorithms)
        except JWT_ERRORS as exc:
            raise invalid_token(exc) from exc
        # Signed by a key of ours from here on; still, a key holder's payload is checked.
        try:
            payload = _decode_claims(claims.decode("utf-8"))
        except _JSON_ERRORS as exc:
            raise InvalidToken("not a valid token: its payload is not JSON") from exc
        if not isinstance(payload, dict):
            raise InvalidToken("not a valid token: its payload is not a JSON object")
        return key, payload

    def _key_for(self, token: str) -> _Key:
        """Slow path for a header we did not write byte for byte: read it, then pick the key."""
        try:
            header = jwt.get_unverified_header(token)
        except JWT_ERRORS as exc:
            raise invalid_token(exc) from exc
        algorithm = header.get("alg")
        if algorithm != self.algorithm:
            raise InvalidToken(
                f"the token's algorithm {algorithm!r} is not allowed; only {self.algorithm}"
            )
        unexpected = set(header) - _HEADER_FIELDS
        if unexpected:
            raise InvalidToken(f"the token's header has unexpected fields {sorted(unexpected)}")
        if header.get("typ", "JWT") != "JWT":
            raise InvalidToken("the token's header type is not JWT")
        kid = header.get("kid")
        if kid is None:
            raise InvalidToken("the token names no key id (kid)")
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken(
                "the token's key id (kid) is unknown: signed with another key, or one rotated out"
            )
        return key
