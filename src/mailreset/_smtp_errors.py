"""One place that turns smtplib, socket and ssl errors into mailreset's delivery errors.

Temporary (worth retrying): 4xx replies, refused or reset connections, timeouts, a server that
hung up. Permanent (retrying cannot help): 5xx replies, every recipient refused with 5xx, a
certificate that does not verify, AUTH the server does not offer or rejects.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from mailreset.errors import DeliveryError, PermanentFailure, TemporaryFailure


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def reply_failure(
    code: int,
    text: bytes | str,
    *,
    what: str,
    recipients: Mapping[str, tuple[int, str]] | None = None,
    original_error: BaseException | None = None,
) -> DeliveryError:
    """The failure a reply ``code`` means: 4xx temporary, anything else permanent."""
    reply = _text(text)
    kind = TemporaryFailure if 400 <= code < 500 else PermanentFailure
    return kind(
        f"{what}: the server answered {code} {reply}",
        smtp_code=code,
        smtp_error=reply,
        recipients=recipients,
        original_error=original_error,
    )


def refused_failure(
    refused: Mapping[str, tuple[int, str]], original_error: BaseException | None = None
) -> DeliveryError:
    """The failure for a message whose every recipient was refused.

    Permanent when every refusal is a 5xx; temporary when any was a 4xx (a busy mailbox).
    """
    temporary = any(400 <= code < 500 for code, _ in refused.values())
    kind = TemporaryFailure if temporary else PermanentFailure
    first_code, first_text = next(iter(refused.values()), (0, ""))
    return kind(
        f"the server refused every recipient: {', '.join(refused)} "
        f"(first reply: {first_code} {first_text})",
        smtp_code=first_code or None,
        smtp_error=first_text,
        recipients=refused,
        original_error=original_error,
    )


@contextmanager
def mapping_smtp_errors(where: str) -> Iterator[None]:
    """Translate whatever smtplib, socket or ssl raise into a DeliveryError.

    ``where`` names the server (``host:port``) for the messages.
    """
    try:
        yield
    except DeliveryError:
        raise
    except smtplib.SMTPRecipientsRefused as error:
        refused = {
            address: (code, _text(text)) for address, (code, text) in error.recipients.items()
        }
        raise refused_failure(refused, error) from error
    except smtplib.SMTPAuthenticationError as error:
        failure = reply_failure(
            error.smtp_code,
            error.smtp_error,
            what=f"AUTH at {where} failed (check SMTPSettings.username and password)",
            original_error=error,
        )
        # A refused password fails every message alike; a 4xx (454) is the server's trouble.
        failure.every_message = isinstance(failure, PermanentFailure)
        raise failure from error
    except smtplib.SMTPResponseException as error:
        raise reply_failure(
            error.smtp_code, error.smtp_error, what=f"SMTP at {where}", original_error=error
        ) from error
    except smtplib.SMTPNotSupportedError as error:
        raise PermanentFailure(
            f"{where} does not support what SMTPSettings ask for: {error}",
            smtp_error=str(error),
            original_error=error,
        ) from error
    except smtplib.SMTPServerDisconnected as error:
        # smtplib turns a timeout while reading a reply into "Connection unexpectedly closed".
        if isinstance(error.__context__, TimeoutError):
            raise _timeout(where, error.__context__) from error
        raise TemporaryFailure(
            f"{where} closed the connection: {error}",
            smtp_error=str(error) or "connection closed",
            original_error=error,
        ) from error
    except smtplib.SMTPException as error:
        raise TemporaryFailure(
            f"SMTP at {where} failed: {error}", smtp_error=str(error), original_error=error
        ) from error
    except ssl.SSLCertVerificationError as error:
        raise PermanentFailure(
            f"the TLS certificate of {where} did not verify ({error.verify_message}); pass "
            "SMTPSettings(ca_file=...) with the server's CA (MAIL_CA_FILE), or an ssl_context "
            "that trusts it",
            smtp_error=f"certificate verification failed: {error.verify_message}",
            original_error=error,
            every_message=True,
        ) from error
    except ssl.SSLError as error:
        raise TemporaryFailure(
            f"TLS with {where} failed: {error}", smtp_error=str(error), original_error=error
        ) from error
    except TimeoutError as error:  # socket.timeout is an alias since Python 3.10
        raise _timeout(where, error) from error
    except OSError as error:
        raise TemporaryFailure(
            f"cannot talk to {where}: {error}", smtp_error=str(error), original_error=error
        ) from error


def _timeout(where: str, error: TimeoutError) -> TemporaryFailure:
    return TemporaryFailure(
        f"{where} did not answer in time (raise SMTPSettings.timeout if it is just slow)",
        smtp_error="timed out",
        original_error=error,
    )
