"""The Bottle example: sign up, log in, log out, forgot password, reset password.

Run it with ``python -m examples.bottle_app`` (see README.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bottle
from bottle import request, response

from examples.bottle_app.adapter import MailresetPlugin
from examples.sqlite_users import SQLiteUsers, User
from mailreset import ExpiredToken, InvalidToken, PasswordReset, StaleToken, WeakPassword

VIEWS = str(Path(__file__).with_name("views"))
DEFAULTS: dict[str, Any] = {
    "DATABASE": "bottle_app.sqlite3",
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 8025,
    "MAIL_DEFAULT_SENDER": "Example app <noreply@app.example>",
    "MAILRESET_URL": "http://127.0.0.1:8080/reset/{token}",
    "MAILRESET_APP_NAME": "Example app",
    "PASSWORD_COST": 2**14,
}


class CookieSession:
    """A tiny signed-cookie session (JSON + HMAC-SHA256); Bottle has none built in."""

    def __init__(self, secret: str) -> None:
        self.key = secret.encode()

    def load(self, cookie: str | None) -> dict[str, Any]:
        """The session in ``cookie``, or an empty one when absent or forged."""
        payload, _, signature = (cookie or "").rpartition(".")
        if payload and hmac.compare_digest(signature, self._sign(payload)):
            data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
            return data
        return {}

    def dump(self, data: Mapping[str, Any]) -> str:
        """``data`` as a signed cookie value."""
        payload = base64.urlsafe_b64encode(json.dumps(dict(data)).encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()


def create_app(config: Mapping[str, Any] | None = None) -> bottle.Bottle:  # noqa: PLR0915 - routes read top to bottom
    """Make the app; ``config`` overrides the defaults (tests pass a temporary database)."""
    app = bottle.Bottle()
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY") or not app.config.get("MAILRESET_SECRET_KEY"):
        raise RuntimeError("set SECRET_KEY and MAILRESET_SECRET_KEY (32+ bytes each)")
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
        if request.method == "POST" and not hmac.compare_digest(
            request.forms.getunicode("csrf", default=""), state["csrf"]
        ):
            bottle.abort(400, "The form expired or did not come from this site: reload and retry.")

    @app.hook("after_request")
    def save_session() -> None:
        if "example.session" in request.environ:
            response.set_cookie(
                "session", sessions.dump(session()), path="/", httponly=True, samesite="lax"
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
        if "@" not in email or users.create(email, password) is None:
            flash("That address cannot be used. Log in or reset your password.", "error")
            return render("signup", email=email)
        flash("Account created. Log in.", "success")
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
        reset.request(request.forms.getunicode("email"), client=request.remote_addr)
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
