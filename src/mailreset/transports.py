"""How a message reaches a server: the Transport protocol, SMTP settings and transports.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from ssl import SSLContext

import attrs

from mailreset.errors import ConfigurationError

__all__ = ["SMTPSettings"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _check_port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigurationError(f"SMTPSettings.port must be a TCP port (1-65535), not {value!r}")


def _check_timeout(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"SMTPSettings.timeout must be a positive number of seconds, not {value!r}"
        )


@attrs.frozen(kw_only=True)
class SMTPSettings:
    """Where and how to reach an SMTP server.

    ``starttls`` upgrades a plain connection (usually port 587); ``ssl`` is TLS from the first
    byte (implicit TLS, usually port 465); they exclude each other. Both verify the server's
    certificate and host name unless ``ssl_context`` says otherwise.

    Attributes:
        host: the server's host name or address.
        port: the server's TCP port.
        starttls: upgrade the connection with STARTTLS after EHLO.
        ssl: connect with implicit TLS.
        username: the AUTH user name, or None for no AUTH.
        password: the AUTH password (never shown in the repr).
        timeout: seconds for connecting and for each reply.
        local_hostname: the name sent in EHLO (default: this machine's FQDN).
        ssl_context: the TLS context; None means ``ssl.create_default_context()``.

    .. versionadded:: 0.1
    """

    host: str = "localhost"
    port: int = attrs.field(default=25, validator=_check_port)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    timeout: float = attrs.field(default=10.0, validator=_check_timeout)
    local_hostname: str | None = None
    ssl_context: SSLContext | None = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.starttls and self.ssl:
            raise ConfigurationError(
                "SMTPSettings.starttls and SMTPSettings.ssl exclude each other: use starttls "
                "for port 587 (STARTTLS) or ssl for port 465 (implicit TLS)"
            )
        if not self.host or any(char in self.host for char in "\r\n\0 "):
            raise ConfigurationError(f"SMTPSettings.host is not a host name: {self.host!r}")
        if self.password is not None and self.username is None:
            raise ConfigurationError(
                "SMTPSettings.password is set but SMTPSettings.username is not"
            )

    @classmethod
    def from_env(
        cls, prefix: str = "MAIL_", environ: Mapping[str, str] | None = None
    ) -> SMTPSettings:
        """Read settings from ``{prefix}SERVER``, ``PORT``, ``USE_TLS``, ``USE_SSL``,
        ``USERNAME``, ``PASSWORD`` and ``TIMEOUT`` (Flask-Mail's names).

        Unset variables keep the defaults. Booleans take 1/true/yes/on or 0/false/no/off/empty
        in any case; anything else raises :class:`ConfigurationError` naming the variable.
        """
        env = os.environ if environ is None else environ
        options: dict[str, object] = {}
        if (server := env.get(f"{prefix}SERVER")) is not None:
            options["host"] = server.strip()
        if (port := env.get(f"{prefix}PORT")) is not None:
            options["port"] = _env_number(f"{prefix}PORT", port, int)
        if (use_tls := env.get(f"{prefix}USE_TLS")) is not None:
            options["starttls"] = _env_bool(f"{prefix}USE_TLS", use_tls)
        if (use_ssl := env.get(f"{prefix}USE_SSL")) is not None:
            options["ssl"] = _env_bool(f"{prefix}USE_SSL", use_ssl)
        if username := env.get(f"{prefix}USERNAME"):
            options["username"] = username
        if password := env.get(f"{prefix}PASSWORD"):
            options["password"] = password
        if (timeout := env.get(f"{prefix}TIMEOUT")) is not None:
            options["timeout"] = _env_number(f"{prefix}TIMEOUT", timeout, float)
        try:
            return cls(**options)  # type: ignore[arg-type]
        except ConfigurationError as error:
            raise ConfigurationError(f"{error} (read from the {prefix}* variables)") from None


def _env_bool(name: str, value: str) -> bool:
    folded = value.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ConfigurationError(
        f"{name}={value!r} is not a boolean: use 1/true/yes/on or 0/false/no/off"
    )


def _env_number(name: str, value: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{name}={value!r} is not {what}") from None
