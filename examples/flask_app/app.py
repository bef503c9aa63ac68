"""The Flask example: sign up, log in, log out, forgot password, reset password.

Run it with ``python -m examples.flask_app`` (see README.md), or ``nox -s demo`` for the whole
thing with the debug SMTP sink.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from examples.flask_app.adapter import init_app, reset_flow
from examples.sqlite_users import COST, SIGN_UP_ANSWER, SQLiteUsers, User, sign_up
from mailreset import ExpiredToken, InvalidMessage, InvalidToken, StaleToken, WeakPassword

DEFAULTS: dict[str, Any] = {
    "DATABASE": "flask_app.sqlite3",
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 8025,
    "MAIL_DEFAULT_SENDER": "Example app <noreply@app.example>",
    "MAILRESET_URL": "http://127.0.0.1:5000/reset/{token}",
    "MAILRESET_APP_NAME": "Example app",
    "PASSWORD_COST": COST,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    # How many proxies in front of the app append to X-Forwarded-For. 0: the client is the
    # connection's address and the header is ignored (anyone can send one); behind one nginx,
    # 1. Too high and clients pick their own address (and rate-limit bucket).
    "PROXY_HOPS": 0,
    # Served over HTTPS: the session cookie gets the Secure flag. None: when MAILRESET_URL
    # is an https:// URL.
    "HTTPS": None,
}


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two texts, whatever characters ``given`` holds.

    hmac.compare_digest refuses non-ASCII str (a TypeError: a 500 for a crafted form);
    compared as UTF-8 bytes, such a value is just wrong.
    """
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def create_app(config: Mapping[str, Any] | None = None) -> Flask:  # noqa: PLR0915 - routes read top to bottom
    """Make the app; ``config`` overrides the defaults (tests pass a temporary database)."""
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("EXAMPLE")  # EXAMPLE_SECRET_KEY=..., EXAMPLE_MAIL_PORT=...
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY") or not app.config.get("MAILRESET_SECRET_KEY"):
        raise RuntimeError("set SECRET_KEY and MAILRESET_SECRET_KEY (32+ bytes each)")
    hops = app.config["PROXY_HOPS"]
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise RuntimeError(f"PROXY_HOPS must be a whole number >= 0, not {hops!r}")
    if hops:
        # Only the last `hops` X-Forwarded-For entries were written by our proxies.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)
    if app.config["HTTPS"] is None:
        app.config["HTTPS"] = app.config["MAILRESET_URL"].startswith("https://")
    app.config["SESSION_COOKIE_SECURE"] = bool(app.config["HTTPS"])
    users = SQLiteUsers(app.config["DATABASE"], password_cost=app.config["PASSWORD_COST"])
    app.extensions["users"] = users
    init_app(app, users=users)

    def session_stamp(user: User) -> str:
        # Derived from the password hash: a new password ends every existing session.
        key = app.config["SECRET_KEY"].encode()
        return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]

    @app.before_request
    def load_user_and_check_csrf() -> None:
        g.user = None
        if "user_id" in session:
            user = users.get(str(session["user_id"]))
            if user is not None and hmac.compare_digest(
                session.get("stamp", ""), session_stamp(user)
            ):
                g.user = user
            else:
                session.clear()
        session.setdefault("csrf", secrets.token_urlsafe(32))
        if request.method == "POST" and not same(request.form.get("csrf", ""), session["csrf"]):
            abort(400, "The form expired or did not come from this site: reload and retry.")

    @app.after_request
    def no_framing(response: Response) -> Response:
        # No page of ours may be framed by another site (clickjacking).
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response

    @app.route("/")
    def index() -> str:
        return render_template("index.html")

    @app.route("/signup", methods=["GET", "POST"])
    def signup() -> str | Response:
        if request.method == "POST":
            email = request.form.get("email", "").strip()
            password = request.form.get("password", "")
            try:
                reset_flow().password_policy(password, email=email)
            except WeakPassword as error:
                flash(f"Choose another password: {error}", "error")
                return render_template("signup.html", email=email)
            if "@" not in email:
                flash("Enter your email address.", "error")
                return render_template("signup.html", email=email)
            try:
                message = sign_up(users, email, password, app.config)
                reset_flow().mailer.send(message)  # queued: the answer does not wait
            except InvalidMessage:
                pass  # not an address mail can go to: the answer stays the same
            flash(SIGN_UP_ANSWER, "success")  # the same for a new and a taken address
            return redirect(url_for("login"))
        return render_template("signup.html", email="")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> str | Response:
        if request.method == "POST":
            user = users.authenticate(
                request.form.get("email", ""), request.form.get("password", "")
            )
            if user is None:
                flash("Wrong email or password.", "error")
                return render_template("login.html")
            session.clear()  # a fresh session at log-in (no session fixation)
            session.update(user_id=user.id, stamp=session_stamp(user))
            flash(f"Logged in as {user.email}.", "success")
            return redirect(url_for("index"))
        return render_template("login.html")

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        flash("Logged out.", "success")
        return redirect(url_for("index"))

    @app.route("/forgot", methods=["GET", "POST"])
    def forgot() -> str | Response:
        if request.method == "POST":
            flow = reset_flow()
            # remote_addr: the connection's address, or with PROXY_HOPS the client's address
            # as our own proxies saw it (ProxyFix); never a header the client wrote.
            flow.request(request.form.get("email"), client=request.remote_addr)
            minutes = round(app.config.get("MAILRESET_MAX_AGE", 600) / 60)
            # The same words whether or not the address has an account.
            flash(
                "If an account exists for that address, we have sent it a link to reset "
                f"the password. The link works for {minutes} minutes.",
                "success",
            )
            return redirect(url_for("login"))
        return render_template("forgot.html")

    @app.route("/reset/<token>", methods=["GET", "POST"])
    def reset(token: str) -> str | Response:
        flow = reset_flow()
        try:
            flow.check(token)  # a GET consumes nothing: mail scanners cannot burn the link
            if request.method == "POST":
                password = request.form.get("password", "")
                if password != request.form.get("confirm", ""):
                    flash("The two passwords differ.", "error")
                    return no_referrer(render_template("reset.html", token=token))
                flow.complete(token, password)
                session.clear()
                flash("Your password was changed. Log in with the new one.", "success")
                return no_referrer(redirect(url_for("login")))
        except WeakPassword as error:
            flash(f"Choose another password: {error}", "error")
        except ExpiredToken:
            flash("This reset link has expired. Ask for a new one.", "error")
            return no_referrer(redirect(url_for("forgot")))
        except StaleToken:
            flash("This reset link was already used. Ask for a new one.", "error")
            return no_referrer(redirect(url_for("forgot")))
        except InvalidToken:
            flash("This reset link is not valid. Ask for a new one.", "error")
            return no_referrer(redirect(url_for("forgot")))
        return no_referrer(render_template("reset.html", token=token))

    return app


def no_referrer(body: str | Response) -> Response:
    """The reset page must not leak its URL (and token) to other sites or caches."""
    response = body if isinstance(body, Response) else Response(body, mimetype="text/html")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
