"""``nox -s demo``: the Flask example and the debug SMTP sink, side by side.

``python -m examples.demo`` starts ``python -m devtools.sink`` and the Flask example with a
demo account, prints where everything is, and runs until Ctrl-C, which stops both.
``--check`` instead walks the whole reset over HTTP without a person (log in, log out, ask for
a link, read the mail from the sink's JSON API, follow the link, set a new password, log in
with it, see the old password and the used link refused) and exits 0, or 1 with the step that
failed.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import logging
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

DEMO_EMAIL = "demo@example.org"
DEMO_PASSWORD = "demo password 1"
NEW_PASSWORD = "a new demo passphrase"


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def _check_port_free(host: str, port: int, what: str, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers do: connections of an earlier run in TIME_WAIT do not make it busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise DemoError(
                f"port {port} on {host} is busy ({error.strerror}); it is needed for {what}: "
                f"stop what uses it or pick another with {option}"
            ) from None


@contextmanager
def run_sink(host: str, smtp_port: int, http_port: int, *, quiet: bool) -> Iterator[str]:
    """Run ``python -m devtools.sink``; yield its web viewer's URL once it answers."""
    command = [
        sys.executable,
        "-m",
        "devtools.sink",
        "--smtp",
        f"{host}:{smtp_port}",
        "--http",
        f"{host}:{http_port}",
    ]
    if quiet:
        command.append("--quiet")
    # stderr goes to a file, not a pipe: a pipe nobody reads would stall the sink when full.
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL if quiet else None, stderr=errors, text=True
        )
        try:
            yield _wait_until_up(process, errors, f"http://{host}:{http_port}")
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_until_up(process: subprocess.Popen[str], errors: IO[str], viewer: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            errors.seek(0)
            raise DemoError(
                f"the debug sink exited with {process.returncode}: {errors.read().strip()}"
            )
        try:
            with urllib.request.urlopen(f"{viewer}/api/messages", timeout=1):
                return viewer
        except OSError:
            if time.monotonic() > deadline:
                raise DemoError(f"the debug sink did not answer on {viewer} in 20 s") from None
            time.sleep(0.1)


@contextmanager
def run_app(host: str, port: int, smtp_port: int, database: Path) -> Iterator[str]:
    """Serve the Flask example from a thread; yield its URL."""
    from werkzeug.serving import make_server

    from examples.flask_app.app import create_app

    url = f"http://{host}:{port}"
    app = create_app(
        {
            "DATABASE": str(database),
            "SECRET_KEY": secrets.token_hex(32),
            "MAILRESET_SECRET_KEY": secrets.token_hex(32),
            "MAIL_SERVER": host,
            "MAIL_PORT": smtp_port,
            "MAILRESET_URL": f"{url}/reset/{{token}}",
            "MAILRESET_APP_NAME": "mailreset demo",
        }
    )
    app.extensions["users"].create(DEMO_EMAIL, DEMO_PASSWORD)
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="demo-app", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        app.extensions["mailreset.close"]()


class Browser:
    """Just enough of a browser: cookies, forms with their CSRF field, no redirects followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def open(self, path: str, form: dict[str, str] | None = None) -> tuple[int, Any, str]:
        """GET (or POST ``form``) ``path``; return status, headers and body."""
        data = None if form is None else urllib.parse.urlencode(form).encode()
        url = path if path.startswith("http") else self.base + path
        try:
            with self.opener.open(url, data=data, timeout=10) as reply:
                return reply.status, reply.headers, reply.read().decode()
        except urllib.error.HTTPError as reply:
            return reply.code, reply.headers, reply.read().decode()

    def follow(self, path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        """Open ``path``, follow redirects with GETs; return the final URL and body."""
        status, headers, body = self.open(path, form)
        while status in {301, 302, 303}:
            path = urllib.parse.urljoin(self.base + "/", headers["Location"])
            status, headers, body = self.open(path)
        if status != 200:
            raise DemoError(f"{path} answered {status}: {body[:200]}")
        return path, body

    def submit(self, path: str, fields: dict[str, str]) -> tuple[str, str]:
        """Load the form at ``path`` and post ``fields`` with its CSRF token."""
        _, body = self.follow(path)
        match = re.search(r'name="csrf" value="([^"]+)"', body)
        if match is None:
            raise DemoError(f"no CSRF field in the form at {path}")
        return self.follow(path, {"csrf": match.group(1), **fields})


def _expect(condition: bool, step: str, detail: str = "") -> None:
    if not condition:
        raise DemoError(f"{step}: {detail}" if detail else step)
    print(f"  ok  {step}")


def _wait_for_mail(viewer: str, to: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{viewer}/api/messages", timeout=5) as reply:
            listing = json.load(reply)
        for item in listing["messages"]:
            if to in item["to"]:
                with urllib.request.urlopen(
                    f"{viewer}/api/messages/{item['id']}", timeout=5
                ) as reply:
                    found: dict[str, Any] = json.load(reply)
                    return found
        time.sleep(0.1)
    raise DemoError(f"no mail to {to} reached the sink ({viewer}) within {timeout:g} s")


def check(app_url: str, viewer: str) -> None:
    """Walk the whole reset over HTTP; raise DemoError at the first step that fails."""
    browser = Browser(app_url)
    _, body = browser.submit("/login", {"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    _expect("Logged in as" in body, "log in with the demo password")
    browser.follow("/logout", {"csrf": _csrf(browser, "/")})  # the form is on every page
    _, body = browser.follow("/")
    _expect('id="logout"' not in body, "log out")
    _, body = browser.submit("/forgot", {"email": DEMO_EMAIL})
    _expect("If an account exists" in body, "ask for a reset link")
    mail = _wait_for_mail(viewer, DEMO_EMAIL)
    links = [link for link in mail["links"] if link.startswith(f"{app_url}/reset/")]
    _expect(bool(links), "the reset mail reached the sink with a link", f"links: {mail['links']}")
    link = links[0]
    status, headers, _ = browser.open(link)
    _expect(
        status == 200 and headers.get("Referrer-Policy") == "no-referrer",
        "open the link (Referrer-Policy: no-referrer)",
        f"status {status}, Referrer-Policy {headers.get('Referrer-Policy')!r}",
    )
    _, body = browser.submit(link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    _expect("Your password was changed" in body, "set a new password")
    _, body = browser.submit("/login", {"email": DEMO_EMAIL, "password": NEW_PASSWORD})
    _expect("Logged in as" in body, "log in with the new password")
    stranger = Browser(app_url)
    _, body = stranger.submit("/login", {"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    _expect("Wrong email or password" in body, "the old password is refused")
    _, body = stranger.follow(link)
    _expect("already used" in body, "the used link is refused")


def _csrf(browser: Browser, path: str) -> str:
    _, body = browser.follow(path)
    match = re.search(r'name="csrf" value="([^"]+)"', body)
    if match is None:
        raise DemoError(f"no CSRF field at {path}")
    return match.group(1)


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    handler: Callable[[int, Any], None] = lambda signum, frame: stop.set()  # noqa: E731
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(0.5):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the demo (or its check); return the exit status."""
    parser = argparse.ArgumentParser(prog="nox -s demo --", description=__doc__)
    parser.add_argument("--check", action="store_true", help="run the reset without a person")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (127.0.0.1)")
    parser.add_argument("--smtp-port", type=int, default=8025, help="the sink's SMTP port")
    parser.add_argument("--http-port", type=int, default=8026, help="the sink's web viewer port")
    parser.add_argument("--app-port", type=int, default=5000, help="the Flask example's port")
    args = parser.parse_args(argv)
    try:
        _check_port_free(args.host, args.smtp_port, "the sink's SMTP server", "--smtp-port")
        _check_port_free(args.host, args.http_port, "the sink's web viewer", "--http-port")
        _check_port_free(args.host, args.app_port, "the Flask example", "--app-port")
        with (
            tempfile.TemporaryDirectory(prefix="mailreset-demo-") as folder,
            run_sink(args.host, args.smtp_port, args.http_port, quiet=args.check) as viewer,
            run_app(args.host, args.app_port, args.smtp_port, Path(folder) / "app.db") as app,
        ):
            if args.check:
                logging.getLogger("werkzeug").setLevel(logging.WARNING)
                print(f"demo check: app {app}, sink {viewer}")
                check(app, viewer)
                print("demo check passed")
                return 0
            print(
                f"\n  The Flask example:  {app}\n"
                f"  Mail it sends:      {viewer}  (the debug sink's viewer)\n"
                f"  Demo account:       {DEMO_EMAIL} / {DEMO_PASSWORD}\n\n"
                "  Try 'Forgot password?', then open the mail in the viewer.\n"
                "  Ctrl-C stops both.\n",
                flush=True,
            )
            _wait_for_interrupt()
            print("stopping ...")
            return 0
    except DemoError as error:
        print(f"demo {'check ' if args.check else ''}FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
