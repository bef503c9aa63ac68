"""The Bottle example: sign up, log in, log out, forgot password, reset password.

Run it with ``python -m examples.bottle_app`` (see README.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bottle
from bottle import request, response

from examples.bottle_app.adapter import MailresetPlugin
from examples.sqlite_users import COST, SIGN_UP_ANSWER, SQLiteUsers, User, sign_up
from mailreset import (
    ExpiredToken,
    InvalidMessage,
    InvalidToken,
    PasswordReset,
    StaleToken,
    WeakPassword,
)

VIEWS = str(Path(__file__).with_name("views"))
DEFAULTS: dict[str, Any] = {
    "DATABASE": "bottle_app.sqlite3",
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 8025,
    "MAIL_DEFAULT_SENDER": "Example app <noreply@app.example>",
    "MAILRESET_URL": "http://127.0.0.1:8080/reset/{token}",
    "MAILRESET_APP_NAME": "Example app",
    "PASSWORD_COST": COST,
    # How many proxies in front of the app append to X-Forwarded-For. 0: the client is the
    # connection's address (REMOTE_ADDR) and the header is ignored, since anyone can send
    # one; behind one nginx, 1. Bottle's own request.remote_addr trusts the header's first
    # entry, which the client writes: never key anything on it.
    "PROXY_HOPS": 0,
    # Served over HTTPS: the session cookie gets the Secure flag. None: when MAILRESET_URL
    # is an https:// URL.
    "HTTPS": None,
}


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two texts, whatever characters ``given`` holds.

    hmac.compare_digest refuses non-ASCII str (a TypeError: a 500 for a crafted form or
    cookie); compared as UTF-8 bytes, such a value is just wrong.
    """
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def client_address(environ: Mapping[str, Any], hops: int) -> str:
    """The client's address: the connection's, or the one our ``hops`` proxies saw.

    Each proxy appends the address it received the request from to X-Forwarded-For, so only
    the last ``hops`` entries were written by proxies we trust; the one ``hops`` from the end
    is the client as our outermost proxy saw it. Fewer entries than hops: the request did not
    come through all of them, and the header is ignored (as werkzeug's ProxyFix does).
    """
    remote = str(environ.get("REMOTE_ADDR") or "")
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    if len(forwarded) < hops or not forwarded[-hops]:
        return remote
    return forwarded[-hops]


def settings_from_env(prefix: str = "EXAMPLE_") -> dict[str, Any]:
    """``EXAMPLE_*`` environment variables as settings (JSON values, else text), as Flask's
    ``from_prefixed_env``: ``EXAMPLE_MAIL_PORT=2525`` is the int 2525."""
    settings: dict[str, Any] = {}
    for name, value in os.environ.items():
        if name.startswith(prefix):
            try:
                settings[name.removeprefix(prefix)] = json.loads(value)
            except ValueError:
                settings[name.removeprefix(prefix)] = value
    return settings


class CookieSession:
    """A tiny signed-cookie session (JSON + HMAC-SHA256); Bottle has none built in."""

    def __init__(self, secret: str) -> None:
        self.key = secret.encode()

    def load(self, cookie: str | None) -> dict[str, Any]:
        """The session in ``cookie``, or an empty one when absent or forged."""
        payload, _, signature = (cookie or "").rpartition(".")
        if payload and same(signature, self._sign(payload)):
            try:
                data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
            except (ValueError, binascii.Error):  # pragma: no cover - we signed it
                return {}
            return data
        return {}

    def dump(self, data: Mapping[str, Any]) -> str:
        """``data`` as a signed cookie value."""
        payload = base64.urlsafe_b64encode(json.dumps(dict(data)).encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        data = payload.encode("utf-8", "surrogatepass")
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()


def create_app(config: Mapping[str, Any] | None = None) -> bottle.Bottle:  # noqa: PLR0915 - routes read top to bottom
    """Make the app; ``config`` overrides the defaults (tests pass a temporary database)."""
    app = bottle.Bottle()
    app.config.update(DEFAULTS)
    app.config.update(settings_from_env())  # EXAMPLE_SECRET_KEY=..., EXAMPLE_MAIL_PORT=...
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY") or not app.config.get("MAILRESET_SECRET_KEY"):
        raise RuntimeError("set SECRET_KEY and MAILRESET_SECRET_KEY (32+ bytes each)")
    hops = app.config["PROXY_HOPS"]
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise RuntimeError(f"PROXY_HOPS must be a whole number >= 0, not {hops!r}")
    https = app.config["HTTPS"]
    if https is None:
        https = app.config["MAILRESET_URL"].startswith("https://")
    users = SQLiteUsers(app.config["DATABASE"], password_cost=app.config["PASSWORD_COST"])
    plugin = app.install(MailresetPlugin(users=users))
    app.config["mailreset.plugin"] = plugin
    sessions = CookieSession(app.config["SECRET_KEY"])

    def session() -> dict[str, Any]:
        state: dict[str, Any] = request.environ["example.session"]
        return state

    def flash(message: str, category: str) -> None:
        session().setdefault("flashes", []).append([category, message])

    def stamp(user: User) -> str:
        # Derived from the password hash: a new password ends every existing session.
        return hmac.new(sessions.key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]

    def render(name: str, **values: Any) -> str:
        state = session()
        flashes = state.pop("flashes", [])
        return bottle.template(
            name,
            template_lookup=[VIEWS],
            app_name=app.config["MAILRESET_APP_NAME"],
            user=request.environ["example.user"],
            csrf=state["csrf"],
            flashes=flashes,
            **values,
        )

    def go(path: str) -> str:
        response.status = 303
        response.set_header("Location", path)
        return ""

    @app.hook("before_request")
    def load_session() -> None:
        state = sessions.load(request.get_cookie("session"))
        request.environ["example.session"] = state
        request.environ["example.user"] = None
        if "user_id" in state:
            user = users.get(str(state["user_id"]))
            if user is not None and hmac.compare_digest(state.get("stamp", ""), stamp(user)):
                request.environ["example.user"] = user
            else:
                state.clear()
        state.setdefault("csrf", secrets.token_urlsafe(32))
        if request.method == "POST" and not same(
            request.forms.getunicode("csrf", default=""), state["csrf"]
        ):
            bottle.abort(400, "The form expired or did not come from this site: reload and retry.")

    @app.hook("after_request")
    def save_session() -> None:
        # No page of ours may be framed by another site (clickjacking).
        response.set_header("X-Frame-Options", "DENY")
        response.set_header("Content-Security-Policy", "frame-ancestors 'none'")
        if "example.session" in request.environ:
            response.set_cookie(
                "session",
                sessions.dump(session()),
                path="/",
                httponly=True,
                samesite="lax",
                secure=bool(https),
            )

    @app.get("/")
    def index() -> str:
        return render("index")

    @app.route("/signup", method=["GET", "POST"])
    def signup(reset: PasswordReset[Any]) -> str:
        if request.method == "GET":
            return render("signup", email="")
        email = request.forms.getunicode("email", default="").strip()
        password = request.forms.getunicode("password", default="")
        try:
            reset.password_policy(password, email=email)
        except WeakPassword as error:
            flash(f"Choose another password: {error}", "error")
            return render("signup", email=email)
        if "@" not in email:
            flash("Enter your email address.", "error")
            return render("signup", email=email)
        try:
            message = sign_up(users, email, password, app.config)
            reset.mailer.send(message)  # queued: the answer does not wait
        except InvalidMessage:
            pass  # not an address mail can go to: the answer stays the same
        flash(SIGN_UP_ANSWER, "success")  # the same for a new and a taken address
        return go("/login")

    @app.route("/login", method=["GET", "POST"])
    def login() -> str:
        if request.method == "GET":
            return render("login")
        user = users.authenticate(
            request.forms.getunicode("email", default=""),
            request.forms.getunicode("password", default=""),
        )
        if user is None:
            flash("Wrong email or password.", "error")
            return render("login")
        state = session()
        state.clear()  # a fresh session at log-in
        state.update(user_id=user.id, stamp=stamp(user), csrf=secrets.token_urlsafe(32))
        flash(f"Logged in as {user.email}.", "success")
        return go("/")

    @app.post("/logout")
    def logout() -> str:
        session().clear()
        flash("Logged out.", "success")
        return go("/")

    @app.route("/forgot", method=["GET", "POST"])
    def forgot(reset: PasswordReset[Any]) -> str:
        if request.method == "GET":
            return render("forgot")
        # Not request.remote_addr: Bottle takes that from X-Forwarded-For, which the client
        # writes (rotating it would give each request a fresh rate-limit bucket).
        client = client_address(request.environ, app.config["PROXY_HOPS"])
        reset.request(request.forms.getunicode("email"), client=client)
        minutes = round(app.config.get("MAILRESET_MAX_AGE", 600) / 60)
        # The same words whether or not the address has an account.
        flash(
            "If an account exists for that address, we have sent it a link to reset the "
            f"password. The link works for {minutes} minutes.",
            "success",
        )
        return go("/login")

    @app.route("/reset/<token>", method=["GET", "POST"])
    def reset_password(token: str, reset: PasswordReset[Any]) -> str:
        # The page must not leak its URL (and token) to other sites or caches.
        response.set_header("Referrer-Policy", "no-referrer")
        response.set_header("Cache-Control", "no-store")
        try:
            reset.check(token)  # a GET consumes nothing: mail scanners cannot burn the link
            if request.method == "POST":
                password = request.forms.getunicode("password", default="")
                if password != request.forms.getunicode("confirm", default=""):
                    flash("The two passwords differ.", "error")
                    return render("reset", token=token)
                reset.complete(token, password)
                session().clear()
                flash("Your password was changed. Log in with the new one.", "success")
                return go("/login")
        except WeakPassword as error:
            flash(f"Choose another password: {error}", "error")
        except ExpiredToken:
            flash("This reset link has expired. Ask for a new one.", "error")
            return go("/forgot")
        except StaleToken:
            flash("This reset link was already used. Ask for a new one.", "error")
            return go("/forgot")
        except InvalidToken:
            flash("This reset link is not valid. Ask for a new one.", "error")
            return go("/forgot")
        return render("reset", token=token)

    return app
