"""SMTPSettings: how to reach an SMTP server, checked when made, readable from the environment.

Public as :class:`mailreset.SMTPSettings` and ``mailreset.transports.SMTPSettings``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from ssl import SSLContext

import attrs

from mailreset._convert import is_whole, positive_seconds
from mailreset.errors import ConfigurationError

__all__ = ["SMTPSettings"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _check_port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not is_whole(value) or not 0 < value < 65536:
        raise ConfigurationError(f"SMTPSettings.port must be a TCP port (1-65535), not {value!r}")


def _to_path_text(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


# The variable (after the prefix) from_env reads for each setting, so that an error about
# settings read from the environment names what the user actually wrote.
_ENV_NAMES = {
    "host": "SERVER",
    "port": "PORT",
    "starttls": "USE_TLS",
    "ssl": "USE_SSL",
    "username": "USERNAME",
    "password": "PASSWORD",
    "timeout": "TIMEOUT",
    "ca_file": "CA_FILE",
    "local_hostname": "LOCAL_HOSTNAME",
    "allow_plaintext_auth": "ALLOW_PLAINTEXT_AUTH",
}
_SETTING_NAME = re.compile(r"SMTPSettings\.(\w+)")


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen(kw_only=True)
class SMTPSettings:
    """Where and how to reach an SMTP server.

    ``starttls`` upgrades a plain connection (usually port 587); ``ssl`` is TLS from the first
    byte (implicit TLS, usually port 465); they exclude each other. Both verify the server's
    certificate and host name: against the system's CAs, the CAs in ``ca_file``, or as
    ``ssl_context`` says.

    A password never crosses the network in clear: ``username`` without ``starttls`` or
    ``ssl`` is a :class:`~mailreset.errors.ConfigurationError` unless the host is a loopback
    address or ``allow_plaintext_auth`` is True.

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
        ca_file: a PEM file of CAs to trust instead of the system's (not with ssl_context).
        allow_plaintext_auth: allow AUTH without TLS to a host that is not loopback.

    .. versionadded:: 0.1
    .. versionchanged:: 0.1
       ``ca_file`` and ``allow_plaintext_auth``; AUTH in clear off loopback is refused.
    """

    host: str = "localhost"
    port: int = attrs.field(default=25, validator=_check_port)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    timeout: float = attrs.field(default=10.0, validator=positive_seconds)
    local_hostname: str | None = None
    ssl_context: SSLContext | None = attrs.field(default=None, eq=False, repr=False)
    ca_file: str | None = attrs.field(default=None, converter=_to_path_text)
    allow_plaintext_auth: bool = False

    def __attrs_post_init__(self) -> None:
        if self.starttls and self.ssl:
            raise ConfigurationError(
                "SMTPSettings.starttls and SMTPSettings.ssl exclude each other: use "
                "SMTPSettings.starttls for port 587 (STARTTLS) or SMTPSettings.ssl for port 465 "
                "(implicit TLS)"
            )
        if not self.host or any(char in self.host for char in "\r\n\0 "):
            raise ConfigurationError(f"SMTPSettings.host is not a host name: {self.host!r}")
        if self.password is not None and self.username is None:
            raise ConfigurationError(
                "SMTPSettings.password is set but SMTPSettings.username is not"
            )
        if self.ca_file is not None:
            if self.ssl_context is not None:
                raise ConfigurationError(
                    "SMTPSettings.ca_file and SMTPSettings.ssl_context exclude each other: "
                    "load the CA file into the context instead"
                )
            if not os.path.isfile(self.ca_file) or not os.access(self.ca_file, os.R_OK):
                raise ConfigurationError(
                    f"SMTPSettings.ca_file={self.ca_file!r} is not a readable file"
                )
        if (
            self.username is not None
            and not (self.starttls or self.ssl)
            and not self.allow_plaintext_auth
            and not _is_loopback(self.host)
        ):
            raise ConfigurationError(
                f"SMTPSettings.username is set but neither SMTPSettings.starttls nor "
                f"SMTPSettings.ssl is: the password would cross the network to {self.host} in "
                "clear. Turn on SMTPSettings.starttls (port 587) or SMTPSettings.ssl (port "
                "465), or set SMTPSettings.allow_plaintext_auth if this network is trusted"
            )

    @classmethod
    def from_env(
        cls, prefix: str = "MAIL_", environ: Mapping[str, str] | None = None
    ) -> SMTPSettings:
        """Read settings from ``{prefix}SERVER``, ``PORT``, ``USE_TLS``, ``USE_SSL``,
        ``USERNAME``, ``PASSWORD``, ``TIMEOUT`` (Flask-Mail's names), ``CA_FILE``,
        ``LOCAL_HOSTNAME`` and ``ALLOW_PLAINTEXT_AUTH``.

        Unset variables keep the defaults. Booleans take 1/true/yes/on or 0/false/no/off/empty
        in any case; anything else raises :class:`ConfigurationError` naming the variable.
        Every error names the variables involved (``MAIL_USE_TLS``, not ``starttls``).
        """
        env = os.environ if environ is None else environ
        options: dict[str, object] = {}
        for field, suffix in _ENV_NAMES.items():
            name = f"{prefix}{suffix}"
            value = env.get(name)
            if value is None:
                continue
            if field in ("starttls", "ssl", "allow_plaintext_auth"):
                options[field] = _env_bool(name, value)
            elif field == "port":
                options[field] = _env_number(name, value, int)
            elif field == "timeout":
                options[field] = _env_number(name, value, float)
            elif field == "host":
                options[field] = value.strip()
            elif value:  # an empty USERNAME, PASSWORD, CA_FILE or LOCAL_HOSTNAME is unset
                options[field] = value.strip() if field != "password" else value
        try:
            return cls(**options)  # type: ignore[arg-type]
        except ConfigurationError as error:

            def variable(match: re.Match[str]) -> str:
                suffix = _ENV_NAMES.get(match.group(1))
                return f"{prefix}{suffix}" if suffix else match.group(0)

            text = _SETTING_NAME.sub(variable, str(error))
            raise ConfigurationError(f"{text} (read from the environment)") from None


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


# Its public home (repr of errors, pickles, docs): mailreset.transports, which re-exports it.
SMTPSettings.__module__ = "mailreset.transports"
