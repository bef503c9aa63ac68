"""The WAN benchmark's server side, run as a child process: ``python -m devtools.bench.wan_server
CERT KEY USER PASSWORD``.

An aiosmtpd capture sink with STARTTLS (the given trustme certificate), AUTH (the given
credentials) and PIPELINING, behind a :class:`~devtools.bench.relay.DelayRelay` that delays
every chunk 10 ms each way. It prints the relay's port, then answers one command per line on
stdin: ``ids PREFIX`` prints how many distinct Message-IDs starting with ``<PREFIX`` arrived.
It stops at end of input.
"""

from __future__ import annotations

import re
import ssl
import sys

from devtools.bench.relay import DelayRelay
from mailreset.testing import SMTPSink

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


def main(argv: list[str]) -> None:
    """Serve until stdin closes."""
    cert, key, user, password = argv
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = SMTPSink(starttls_context=context, credentials={user: password}, pipelining=True)
    sink.start()
    relay = DelayRelay(sink.port).start()
    print(relay.port, flush=True)
    seen: dict[bytes, None] = {}
    scanned = 0
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "ids":
                messages = sink.messages
                for message in messages[scanned:]:
                    if found := _MESSAGE_ID.search(message.raw):
                        seen[found.group(1)] = None
                scanned = len(messages)
                prefix = f"<{argument}".encode()
                print(sum(1 for key in seen if key.startswith(prefix)), flush=True)
    finally:
        relay.stop()
        sink.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
