"""``nox -s demo``: an example app (Flask by default) and the debug SMTP sink, side by side.

``python -m examples.demo`` starts ``python -m devtools.sink`` and the example app chosen with
``--app flask|bottle|fastapi|django`` with a demo account, prints where everything is, and
runs until Ctrl-C, which stops both.
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


APPS = ("flask", "bottle", "fastapi", "django")
APP_PORTS = {"flask": 5000, "bottle": 8080, "fastapi": 8000, "django": 8000}
APP_NAMES = {"flask": "Flask", "bottle": "Bottle", "fastapi": "FastAPI", "django": "Django"}


@contextmanager
def run_app(name: str, host: str, port: int, smtp_port: int, database: Path) -> Iterator[str]:
    """Serve the example app ``name`` from a thread, with the demo account; yield its URL."""
    url = f"http://{host}:{port}"
    config: dict[str, Any] = {
        "DATABASE": str(database),
        "SECRET_KEY": secrets.token_hex(32),
        "MAILRESET_SECRET_KEY": secrets.token_hex(32),
        "MAIL_SERVER": host,
        "MAIL_PORT": smtp_port,
        "MAILRESET_URL": f"{url}/reset/{{token}}",
        "MAILRESET_APP_NAME": "mailreset demo",
    }
    maker = {"flask": _flask, "bottle": _bottle, "fastapi": _fastapi, "django": _django}[name]
    with maker(host, port, config):
        yield url


@contextmanager
def _serve_wsgi(host: str, port: int, app: Any) -> Iterator[None]:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="demo-app", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@contextmanager
def _flask(host: str, port: int, config: dict[str, Any]) -> Iterator[None]:
    from examples.flask_app.app import create_app

    app = create_app(config)
    app.extensions["users"].create(DEMO_EMAIL, DEMO_PASSWORD)
    try:
        with _serve_wsgi(host, port, app):
            yield
    finally:
        app.extensions["mailreset.close"]()


@contextmanager
def _bottle(host: str, port: int, config: dict[str, Any]) -> Iterator[None]:
    from examples.bottle_app.app import create_app

    app = create_app(config)
    app.config["mailreset.plugin"].users.create(DEMO_EMAIL, DEMO_PASSWORD)
    try:
        with _serve_wsgi(host, port, app):
            yield
    finally:
        app.close()


@contextmanager
def _fastapi(host: str, port: int, config: dict[str, Any]) -> Iterator[None]:
    import uvicorn

    from examples.fastapi_app.app import create_app

    app = create_app(config)
    app.state.users.create(DEMO_EMAIL, DEMO_PASSWORD)
    # The lifespan makes the mailer at start and closes it (delivering the rest) at stop.
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, lifespan="on", log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="demo-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DemoError(f"the FastAPI example did not start on {host}:{port} within 20 s")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def _django(host: str, port: int, config: dict[str, Any]) -> Iterator[None]:
    from examples.django_app.settings import configure, create_tables, mail_settings

    configure(
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": config["DATABASE"]}
        },
        SECRET_KEY=config["SECRET_KEY"],
        MAILRESET_SECRET_KEY=config["MAILRESET_SECRET_KEY"],
        **mail_settings(host=config["MAIL_SERVER"], port=config["MAIL_PORT"]),
        MAILRESET_URL=config["MAILRESET_URL"],
        MAILRESET_APP_NAME=config["MAILRESET_APP_NAME"],
    )
    create_tables()
    from django.contrib.auth import get_user_model
    from django.core.handlers.wsgi import WSGIHandler

    from examples.django_app import mail_backend
    from examples.django_app.adapter import reset_flow
    from mailreset import normalize_email

    get_user_model().objects.create_user(
        username=normalize_email(DEMO_EMAIL), email=DEMO_EMAIL, password=DEMO_PASSWORD
    )
    try:
        with _serve_wsgi(host, port, WSGIHandler()):
            yield
    finally:
        # Before the sink stops (at exit they would, too late for this demo's sink).
        reset_flow().close()
        mail_backend.mailer().close(10)  # type: ignore[attr-defined]


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
        """Load the form at ``path`` (following redirects) and post ``fields`` with its CSRF
        token to where the form is."""
        form_at, body = self.follow(path)
        return self.follow(form_at, {**_csrf_field(body, path), **fields})


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
    browser.follow("/logout", _csrf(browser, "/"))  # the form is on every page
    _, body = browser.follow("/")
    _expect('id="logout"' not in body, "log out")
    _, body = browser.submit("/forgot", {"email": DEMO_EMAIL})
    _expect("If an account exists" in body, "ask for a reset link")
    mail = _wait_for_mail(viewer, DEMO_EMAIL)
    links = [link for link in mail["links"] if link.startswith(f"{app_url}/reset/")]
    _expect(bool(links), "the reset mail reached the sink with a link", f"links: {mail['links']}")
    link = links[0]
    status, headers, _ = browser.open(link)
    # 200, or (Django) a redirect to the form after keeping the token in the session.
    _expect(
        status in {200, 302} and headers.get("Referrer-Policy") == "no-referrer",
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


def _csrf_field(body: str, path: str) -> dict[str, str]:
    """The form's CSRF field: ``csrf`` in the Flask, Bottle and FastAPI examples, Django's
    ``csrfmiddlewaretoken`` in the Django one."""
    match = re.search(r'name="(csrf|csrfmiddlewaretoken)" value="([^"]+)"', body)
    if match is None:
        raise DemoError(f"no CSRF field in the form at {path}")
    return {match.group(1): match.group(2)}


def _csrf(browser: Browser, path: str) -> dict[str, str]:
    _, body = browser.follow(path)
    return _csrf_field(body, path)


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
    parser.add_argument("--app", choices=APPS, default="flask", help="the example app (flask)")
    parser.add_argument(
        "--app-port", type=int, help="the app's port (5000 Flask, 8080 Bottle, 8000 others)"
    )
    args = parser.parse_args(argv)
    app_port = args.app_port or APP_PORTS[args.app]
    what = f"the {APP_NAMES[args.app]} example"
    try:
        _check_port_free(args.host, args.smtp_port, "the sink's SMTP server", "--smtp-port")
        _check_port_free(args.host, args.http_port, "the sink's web viewer", "--http-port")
        _check_port_free(args.host, app_port, what, "--app-port")
        with (
            tempfile.TemporaryDirectory(prefix="mailreset-demo-") as folder,
            run_sink(args.host, args.smtp_port, args.http_port, quiet=args.check) as viewer,
            run_app(args.app, args.host, app_port, args.smtp_port, Path(folder) / "app.db") as app,
        ):
            if args.check:
                logging.getLogger("werkzeug").setLevel(logging.WARNING)
                print(f"demo check: {what} {app}, sink {viewer}")
                check(app, viewer)
                print("demo check passed")
                return 0
            print(
                f"\n  {what[0].upper() + what[1:] + ':':<20}{app}\n"
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
