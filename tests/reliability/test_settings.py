"""SMTPSettings: no password in clear off loopback, CA files, and errors naming the variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailreset import ConfigurationError, SMTPSettings, SMTPTransport
from mailreset.testing import SMTPSink
from tests.reliability.support import TLSPair, outgoing

SECRET = "hunter2-secret-password"


@pytest.mark.parametrize("host", ["smtp.example.com", "192.0.2.7", "2001:db8::1"])
def test_auth_without_tls_off_loopback_is_refused(host: str) -> None:
    """username without starttls or ssl to a remote host is a ConfigurationError saying why."""
    with pytest.raises(ConfigurationError, match="in clear") as caught:
        SMTPSettings(host=host, port=587, username="app", password=SECRET)

    message = str(caught.value)
    assert "SMTPSettings.starttls" in message
    assert "SMTPSettings.allow_plaintext_auth" in message
    assert SECRET not in message


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.53", "::1", "[::1]"])
def test_auth_without_tls_on_loopback_is_allowed(host: str) -> None:
    """A local relay (loopback) may take AUTH in clear: nothing crosses a network."""
    assert "app" == SMTPSettings(host=host, username="app", password=SECRET).username


def test_allow_plaintext_auth_is_the_explicit_way_out() -> None:
    """allow_plaintext_auth=True accepts AUTH in clear to a remote host."""
    settings = SMTPSettings(
        host="relay.internal", username="app", password=SECRET, allow_plaintext_auth=True
    )

    assert settings.allow_plaintext_auth


@pytest.mark.parametrize("tls", [{"starttls": True}, {"ssl": True, "port": 465}])
def test_auth_with_tls_is_fine_anywhere(tls: dict[str, object]) -> None:
    """With STARTTLS or implicit TLS, AUTH to a remote host needs nothing more."""
    assert SMTPSettings(host="smtp.example.com", username="a", password=SECRET, **tls)


def test_repr_never_shows_the_password() -> None:
    """Neither repr nor str of settings carries the password, however they were made."""
    made = SMTPSettings(host="smtp.example.com", starttls=True, username="a", password=SECRET)
    read = SMTPSettings.from_env(
        environ={
            "MAIL_SERVER": "smtp.example.com",
            "MAIL_USE_TLS": "1",
            "MAIL_USERNAME": "a",
            "MAIL_PASSWORD": SECRET,
        }
    )

    for settings in (made, read):
        assert SECRET not in repr(settings)
        assert SECRET not in str(settings)
    assert SECRET not in repr(SMTPTransport(made))


def test_from_env_reads_ca_file_local_hostname_and_plaintext_switch(tmp_path: Path) -> None:
    """MAIL_CA_FILE, MAIL_LOCAL_HOSTNAME and MAIL_ALLOW_PLAINTEXT_AUTH reach the settings."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not checked until a connection is made\n")
    settings = SMTPSettings.from_env(
        environ={
            "MAIL_SERVER": "relay.internal",
            "MAIL_USERNAME": "app",
            "MAIL_PASSWORD": SECRET,
            "MAIL_CA_FILE": str(ca_file),
            "MAIL_LOCAL_HOSTNAME": "web-1.app.example",
            "MAIL_ALLOW_PLAINTEXT_AUTH": "yes",
        }
    )

    assert str(ca_file) == settings.ca_file
    assert "web-1.app.example" == settings.local_hostname
    assert settings.allow_plaintext_auth


@pytest.mark.parametrize(
    ("environ", "named", "not_named"),
    [
        ({"MAIL_USE_TLS": "1", "MAIL_USE_SSL": "1"}, ["MAIL_USE_TLS", "MAIL_USE_SSL"], "starttls"),
        (
            {"MAIL_SERVER": "smtp.example.com", "MAIL_USERNAME": "a", "MAIL_PASSWORD": SECRET},
            ["MAIL_USERNAME", "MAIL_USE_TLS", "MAIL_ALLOW_PLAINTEXT_AUTH"],
            "SMTPSettings",
        ),
        ({"MAIL_PORT": "70000"}, ["MAIL_PORT"], "SMTPSettings.port"),
        ({"MAIL_TIMEOUT": "0"}, ["MAIL_TIMEOUT"], "SMTPSettings.timeout"),
        ({"MAIL_CA_FILE": "/nonexistent/ca.pem"}, ["MAIL_CA_FILE"], "ca_file"),
        ({"MAIL_ALLOW_PLAINTEXT_AUTH": "maybe"}, ["MAIL_ALLOW_PLAINTEXT_AUTH"], "boolean?"),
        ({"MAIL_PASSWORD": SECRET}, ["MAIL_PASSWORD", "MAIL_USERNAME"], "SMTPSettings"),
    ],
)
def test_errors_about_environment_settings_name_the_variables(
    environ: dict[str, str], named: list[str], not_named: str
) -> None:
    """An error about settings read from the environment speaks of MAIL_* variables only."""
    with pytest.raises(ConfigurationError) as caught:
        SMTPSettings.from_env(environ=environ)

    message = str(caught.value)
    for variable in named:
        assert variable in message
    assert not_named not in message
    assert SECRET not in message


def test_a_custom_prefix_is_named_too() -> None:
    """from_env(prefix="SMTP_") names SMTP_* variables in its errors."""
    with pytest.raises(ConfigurationError, match=r"SMTP_USE_TLS.*SMTP_USE_SSL"):
        SMTPSettings.from_env("SMTP_", environ={"SMTP_USE_TLS": "on", "SMTP_USE_SSL": "on"})


def test_ca_file_and_ssl_context_exclude_each_other(tmp_path: Path) -> None:
    """Two sources of trust are refused: one of them would be silently ignored."""
    import ssl

    tls = TLSPair(str(tmp_path))
    with pytest.raises(ConfigurationError, match=r"ca_file and SMTPSettings\.ssl_context"):
        SMTPSettings(starttls=True, ca_file=tls.ca_file, ssl_context=ssl.create_default_context())


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_ca_file_trusts_a_private_ca(mode: str, tmp_path: Path) -> None:
    """With ca_file, STARTTLS and implicit TLS verify a server signed by that CA."""
    tls = TLSPair(str(tmp_path))
    options = {"starttls_context" if mode == "starttls" else "ssl_context": tls.server_context}
    with SMTPSink(**options) as sink:  # type: ignore[arg-type]
        settings = SMTPSettings(
            host="localhost",
            port=sink.port,
            starttls=mode == "starttls",
            ssl=mode == "ssl",
            ca_file=tls.ca_file,
        )
        with SMTPTransport(settings) as transport:
            transport.send(outgoing(1))

        assert ["message 1"] == [message.subject for message in sink.wait_for(1)]
