"""The WAN regime: a burst through a 20 ms round trip, with STARTTLS and AUTH.

The server (a child process, :mod:`devtools.bench.wan_server`) is the aiosmtpd capture sink
with STARTTLS (a trustme certificate), AUTH and PIPELINING, behind a relay that delays every
chunk 10 ms each way (:mod:`devtools.bench.relay`). Both sides send the same burst of
pre-built messages through the relay:

- ours: ``ThreadedMailer`` with its default settings (16 workers, each one persistent,
  verifying TLS connection; the client trusts the test CA through ``SMTPSettings.ssl_context``);
- the tutorial: a thread and a new Flask-Mail connection per message, with ``MAIL_USE_TLS``
  and a login on each one (Flask-Mail's ``starttls()`` does not verify the certificate).

Lost messages are counted at the sink by distinct Message-ID, after a bounded wait. Every
wait here is bounded; a tutorial thread still stuck when its deadline passes counts as lost.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trustme

from devtools.bench.harness import Comparison, Options, interleaved_medians, reset_messages
from devtools.bench.tutorial import tutorial_sender
from mailreset import SMTPSettings, ThreadedMailer

USER, PASSWORD = "bench", "bench-password"


class WanServer:
    """The sink and its relay in a child process; ``ids(prefix)`` counts distinct arrivals."""

    def __init__(self, folder: Path) -> None:
        ca = trustme.CA()
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        cert, key = folder / "server.pem", folder / "server.key"
        certificate.cert_chain_pems[0].write_to_path(str(cert))
        certificate.private_key_pem.write_to_path(str(key))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.bench.wan_server",
                str(cert),
                str(key),
                USER,
                PASSWORD,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        context = ssl.create_default_context()
        ca.configure_trust(context)
        self.settings = SMTPSettings(
            host="127.0.0.1",
            port=self.port,
            starttls=True,
            username=USER,
            password=PASSWORD,
            ssl_context=context,
            local_hostname="bench",
            timeout=30.0,
        )

    def ids(self, prefix: str) -> int:
        """How many distinct Message-IDs starting with ``<prefix`` arrived."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"ids {prefix}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def wait_for(self, prefix: str, count: int, timeout: float) -> int:
        """Poll (bounded) until ``count`` distinct messages of ``prefix`` arrived."""
        deadline = time.monotonic() + timeout
        seen = self.ids(prefix)
        while seen < count and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = self.ids(prefix)
        return seen

    def close(self) -> None:
        """Stop the child (which drops the tutorial's stuck connections, if any)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def run(options: Options) -> list[Comparison]:
    """Throughput and losses of a burst through the WAN relay, ours against the tutorial."""
    count = 400 if options.quick else 2000
    rounds = 1 if options.quick else min(options.rounds, 3)
    deadline = 30.0 if options.quick else 180.0
    lost = {"ours": 0, "tutorial": 0}
    errors = [0]
    lock = threading.Lock()

    def count_errors(arguments: threading.ExceptHookArgs) -> None:
        with lock:
            errors[0] += 1

    with tempfile.TemporaryDirectory() as folder:
        server = WanServer(Path(folder))
        threading.excepthook = count_errors
        runs = [0]
        try:

            def ours() -> float:
                runs[0] += 1
                prefix = f"ours{runs[0]}."
                messages = reset_messages(count, tag=prefix)
                failures: list[BaseException] = []
                start = time.perf_counter()
                mailer = ThreadedMailer(
                    server.settings, on_failure=lambda _m, error: failures.append(error)
                )
                for message in messages:
                    mailer.send(message)
                with contextlib.suppress(TimeoutError):
                    mailer.close(deadline)
                elapsed = time.perf_counter() - start
                lost["ours"] += count - server.wait_for(prefix, count, 10)
                return count / elapsed

            def tutorial() -> float:
                runs[0] += 1
                prefix = f"tutorial{runs[0]}."
                messages = reset_messages(count, tag=prefix)
                with tutorial_sender(server.settings) as send:
                    start = time.perf_counter()
                    threads = [send(message) for message in messages]
                    for thread in threads:
                        thread.join(max(0.0, start + deadline - time.perf_counter()))
                    elapsed = time.perf_counter() - start
                lost["tutorial"] += count - server.wait_for(prefix, count, 10)
                return count / elapsed

            rates = interleaved_medians({"ours": ours, "tutorial": tutorial}, rounds)
        finally:
            server.close()
            threading.excepthook = threading.__excepthook__

    sent = count * rounds
    return [
        Comparison(
            "WAN burst: ThreadedMailer defaults vs tutorial",
            rates["ours"],
            rates["tutorial"],
            "thread + Flask-Mail TLS+AUTH connection per message",
            "msg/s",
            target=1.2,
            notes=[
                "server: aiosmtpd capture sink, STARTTLS + AUTH + PIPELINING, behind a relay "
                "delaying each chunk 10 ms each way",
                f"bursts of {count}, {rounds} round(s); lost (distinct Message-IDs missing at "
                f"the sink): ours {lost['ours']} of {sent}, tutorial {lost['tutorial']} of "
                f"{sent} ({errors[0]} exceptions in its threads, only printed by default)",
                "stretch: 2x",
            ],
        ),
        Comparison(
            "WAN burst: messages lost, ours vs tutorial",
            float(lost["ours"]),
            float(lost["tutorial"]),
            "tutorial, same bursts",
            "lost",
            higher_is_better=False,
            notes=["target: 0 lost for ours"],
        ),
    ]
