"""A Celery task's one argument: an envelope and its delivery policy as JSON-ready plain data."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

from mailreset._envelope import Envelope
from mailreset.errors import InvalidMessage
from mailreset.mailers import Retry

#: The version of the task's plain-data payload (a worker refuses what it does not know).
PAYLOAD_VERSION = 1


def job_payload(envelope: Envelope, *, env_prefix: str, retry: Retry) -> dict[str, Any]:
    """The task's one argument: ``envelope`` and its delivery policy as JSON-ready plain data.

    The bytes travel as text when they are ASCII (most mail: readable in the broker, and no
    bigger), as base64 otherwise. No SMTP setting is in it, only ``env_prefix``, the name of
    the worker's own settings.

    .. versionadded:: 0.1
    """
    if envelope.data.isascii():
        data, encoding = envelope.data.decode("ascii"), "ascii"
    else:
        data, encoding = base64.b64encode(envelope.data).decode("ascii"), "base64"
    return {
        "version": PAYLOAD_VERSION,
        "sender": envelope.sender,
        "recipients": list(envelope.recipients),
        "data": data,
        "encoding": encoding,
        "message_id": envelope.message_id,
        "smtputf8": envelope.smtputf8,
        "env_prefix": env_prefix,
        "retry": {
            "attempts": retry.attempts,
            "initial": retry.initial,
            "maximum": retry.maximum,
            "deadline": retry.deadline,
        },
        "enqueued_at": time.time(),
    }


def envelope_from_payload(job: Mapping[str, Any]) -> Envelope:
    """The :class:`~mailreset.transports.Envelope` in a task's payload, checked again.

    Raises :class:`~mailreset.errors.InvalidMessage` for a payload that is not one (a task is
    data from the broker, not trusted).

    .. versionadded:: 0.1
    """
    if not isinstance(job, Mapping) or job.get("version") != PAYLOAD_VERSION:
        raise InvalidMessage(
            f"not a mailreset task payload of version {PAYLOAD_VERSION}: the worker and the "
            "web side run different mailreset versions, or the task was made by hand"
        )
    try:
        encoding, text = job["encoding"], job["data"]
        if encoding == "ascii":
            data = text.encode("ascii")
        elif encoding == "base64":
            data = base64.b64decode(text, validate=True)
        else:
            raise InvalidMessage(f"unknown payload encoding {encoding!r}")
        return Envelope(
            sender=job["sender"],
            recipients=job["recipients"],
            data=data,
            message_id=job.get("message_id") or None,
            smtputf8=bool(job.get("smtputf8", False)),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise InvalidMessage(f"a malformed mailreset task payload: {error!r}") from error
