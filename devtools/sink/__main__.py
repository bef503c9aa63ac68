"""``python -m devtools.sink``: a local SMTP server that catches mail and shows it.

Point your app at SMTP 127.0.0.1:8025 (MAIL_SERVER=127.0.0.1 MAIL_PORT=8025), then read each
message as a block in this terminal or in the viewer at http://127.0.0.1:8026/.
Nothing is delivered anywhere. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from devtools.sink.server import DEFAULT_MAX_SIZE, DebugSink
from devtools.sink.store import SinkStore
from mailreset.testing import FaultPlan

EPILOG = """\
fault injection (to test how a mailer copes):
  --delay 2              wait 2 s before answering each DATA
  --tempfail-first 3     answer 451 to the first 3 messages
  --fail-rate 0.2 --seed 1   answer 451 to 20% of messages, repeatably
  --reject '*@blocked.test'  answer 550 to matching recipients
  --drop-after-data      hang up instead of answering DATA (stores nothing)

examples:
  python -m devtools.sink
  python -m devtools.sink --store .mail --smtp 127.0.0.1:2525
  nox -s sink -- --tempfail-first 2
"""


def _address(default_port: int) -> Callable[[str], tuple[str, int]]:
    def parse(text: str) -> tuple[str, int]:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, str(default_port)
        host = host.strip("[]") or "127.0.0.1"
        try:
            number = int(port)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number") from None
        if not 0 <= number <= 65535:
            raise argparse.ArgumentTypeError(f"{text!r}: the port must be 0-65535")
        return host, number

    return parse


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must not be negative")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devtools.sink``."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.sink",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--smtp",
        type=_address(8025),
        default=("127.0.0.1", 8025),
        metavar="HOST:PORT",
        help="where the SMTP server listens (default 127.0.0.1:8025; port 0 picks one)",
    )
    parser.add_argument(
        "--http",
        type=_address(8026),
        default=("127.0.0.1", 8026),
        metavar="HOST:PORT",
        help="where the web viewer listens (default 127.0.0.1:8026; port 0 picks one)",
    )
    parser.add_argument("--no-http", action="store_true", help="run without the web viewer")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding to addresses other than loopback (anyone who can reach them "
        "can read the captured mail)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="also save each message as DIR/<id>.eml; messages there are loaded at start",
    )
    parser.add_argument(
        "--max-messages",
        type=int,
        default=1000,
        metavar="N",
        help="keep the newest N messages in memory (default 1000)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help=f"refuse bigger messages with 552 (default {DEFAULT_MAX_SIZE})",
    )
    parser.add_argument("--quiet", action="store_true", help="print no block per message")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--delay",
        type=_non_negative(float),
        default=0.0,
        metavar="SECONDS",
        help="wait before each reply to DATA",
    )
    faults.add_argument(
        "--tempfail-first",
        type=_non_negative(int),
        default=0,
        metavar="N",
        help="answer 451 to DATA for the first N messages",
    )
    faults.add_argument(
        "--fail-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="answer 451 to DATA with probability P (0-1)",
    )
    faults.add_argument("--seed", type=int, help="seed for --fail-rate, for repeatable runs")
    faults.add_argument(
        "--reject",
        metavar="GLOB",
        help="answer 550 to RCPT for addresses matching this fnmatch glob",
    )
    faults.add_argument(
        "--drop-after-data",
        action="store_true",
        help="close the connection instead of replying to DATA (stores nothing)",
    )
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Run the sink until Ctrl-C or SIGTERM; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    smtp_host, smtp_port = args.smtp
    http_host, http_port = args.http
    remote = [host for host in {smtp_host, http_host} if not _is_loopback(host)]
    if remote and not args.allow_remote:
        parser.error(
            f"{', '.join(sorted(remote))} is not a loopback address; anyone who can reach it "
            "could read the captured mail. Pass --allow-remote if that is what you want."
        )
    if args.max_messages < 1:
        parser.error("--max-messages must be at least 1")
    if args.max_size < 1:
        parser.error("--max-size must be at least 1")
    if remote:
        print(
            f"WARNING: listening on {', '.join(sorted(remote))}, beyond this machine: anyone "
            "who can reach it can send mail here and read every captured message.",
            file=sys.stderr,
            flush=True,
        )
    _make_output_safe()

    try:
        store = SinkStore(
            max_messages=args.max_messages,
            directory=args.store,
            warn=lambda text: print(f"sink: {text}", file=sys.stderr, flush=True),
        )
        plan = FaultPlan(
            delay=args.delay,
            tempfail_first=args.tempfail_first,
            fail_rate=args.fail_rate,
            seed=args.seed,
            reject=args.reject,
            drop_after_data=args.drop_after_data,
        )
        sink = DebugSink(
            smtp_host=smtp_host,
            smtp_port=smtp_port,
            http_host=http_host,
            http_port=None if args.no_http else http_port,
            store=store,
            faults=plan,
            max_size=args.max_size,
            terminal=None if args.quiet else sys.stdout,
            allow_remote=args.allow_remote,
        )
        sink.start()
    except OSError as error:
        print(
            f"sink: cannot start: {error}. Is another sink running? Pick other ports with "
            "--smtp HOST:PORT / --http HOST:PORT (port 0 picks a free one).",
            file=sys.stderr,
        )
        return 1

    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(_banner(sink, plan, store), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("sink: stopping", file=sys.stderr, flush=True)
        sink.stop()
    return 0


def _banner(sink: DebugSink, plan: FaultPlan, store: SinkStore) -> str:
    lines = [f"mailreset sink: SMTP on {sink.smtp.host}:{sink.smtp.port}"]
    if sink.web is not None:
        lines.append(f"mailreset sink: viewer at {sink.web.url}")
    if store.directory is not None:
        lines.append(f"mailreset sink: saving to {store.directory} ({len(store)} loaded)")
    if not plan.is_quiet:
        lines.append(f"mailreset sink: injecting faults: {plan}")
    lines.append("mailreset sink: press Ctrl-C to stop")
    return "\n".join(lines)


def _make_output_safe() -> None:
    # A subject in any script must never crash the printer on an ASCII-only terminal.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


if __name__ == "__main__":
    sys.exit(main())
