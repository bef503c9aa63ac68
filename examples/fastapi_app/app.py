"""The FastAPI example: sign up, log in, log out, forgot password, reset password.

Run it with ``python -m examples.fastapi_app`` (see README.md). Routes are async; anything
that blocks (scrypt hashing, SQLite) runs in a thread with :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse

from examples.fastapi_app.adapter import Mailreset, mailreset_lifespan, reset_flow
from examples.sqlite_users import SQLiteUsers, User
from mailreset import ExpiredToken, InvalidToken, PasswordReset, StaleToken, WeakPassword

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True
)
DEFAULTS: dict[str, Any] = {
    "DATABASE": "fastapi_app.sqlite3",
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 8025,
    "MAIL_DEFAULT_SENDER": "Example app <noreply@app.example>",
    "MAILRESET_URL": "http://127.0.0.1:8000/reset/{token}",
    "MAILRESET_APP_NAME": "Example app",
    "PASSWORD_COST": 2**14,
    "WELCOME_TIMEOUT": 10.0,
}
Flow = Annotated[PasswordReset[Any], Depends(reset_flow)]
FORM_LIMIT = 64 * 1024  # bytes of a form body read at most


class CookieSession:
    """A tiny signed-cookie session (JSON + HMAC-SHA256), without extra dependencies."""

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


def create_app(config: Mapping[str, Any] | None = None) -> FastAPI:  # noqa: PLR0915 - routes read top to bottom
    """Make the app; ``config`` overrides the defaults (tests pass a temporary database)."""
    settings = {**DEFAULTS, **(config or {})}
    if not settings.get("SECRET_KEY") or not settings.get("MAILRESET_SECRET_KEY"):
        raise RuntimeError("set SECRET_KEY and MAILRESET_SECRET_KEY (32+ bytes each)")
    users = SQLiteUsers(settings["DATABASE"], password_cost=settings["PASSWORD_COST"])
    app = FastAPI(lifespan=mailreset_lifespan(settings, users=users), openapi_url=None)
    app.state.users = users
    sessions = CookieSession(settings["SECRET_KEY"])

    def stamp(user: User) -> str:
        # Derived from the password hash: a new password ends every existing session.
        return hmac.new(sessions.key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]

    def flash(request: Request, message: str, category: str) -> None:
        request.state.session.setdefault("flashes", []).append([category, message])

    def render(request: Request, name: str, **values: Any) -> HTMLResponse:
        state = request.state.session
        html = TEMPLATES.get_template(name).render(
            app_name=settings["MAILRESET_APP_NAME"],
            user=request.state.user,
            csrf=state["csrf"],
            flashes=state.pop("flashes", []),
            **values,
        )
        return HTMLResponse(html)

    def go(path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)

    @app.middleware("http")
    async def session_and_csrf(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        state = sessions.load(request.cookies.get("session"))
        request.state.session, request.state.user, request.state.form = state, None, {}
        if "user_id" in state:
            user = await asyncio.to_thread(users.get, str(state["user_id"]))
            if user is not None and hmac.compare_digest(state.get("stamp", ""), stamp(user)):
                request.state.user = user
            else:
                state.clear()
        state.setdefault("csrf", secrets.token_urlsafe(32))
        if request.method == "POST":
            body = await request.body()
            fields = urllib.parse.parse_qs(body[:FORM_LIMIT].decode("utf-8", "replace"))
            request.state.form = {key: values[0] for key, values in fields.items()}
            if not hmac.compare_digest(request.state.form.get("csrf", ""), state["csrf"]):
                return PlainTextResponse(
                    "The form expired or did not come from this site: reload and retry.", 400
                )
        response = await call_next(request)
        response.set_cookie(
            "session", sessions.dump(state), path="/", httponly=True, samesite="lax"
        )
        return response

    def field(request: Request, name: str) -> str:
        value: str = request.state.form.get(name, "")
        return value

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        return render(request, "index.html")

    @app.get("/signup", response_class=HTMLResponse)
    async def signup_form(request: Request) -> HTMLResponse:
        return render(request, "signup.html", email="")

    @app.post("/signup", response_model=None)
    async def signup(request: Request, reset: Flow) -> Response:
        email, password = field(request, "email").strip(), field(request, "password")
        try:
            reset.password_policy(password, email=email)
        except WeakPassword as error:
            flash(request, f"Choose another password: {error}", "error")
            return render(request, "signup.html", email=email)
        user = await asyncio.to_thread(users.create, email, password) if "@" in email else None
        if user is None:
            flash(request, "That address cannot be used. Log in or reset your password.", "error")
            return render(request, "signup.html", email=email)
        flash(request, "Account created. Log in.", "success")
        if not await welcome(request.app.state.mailreset, user):
            flash(request, "We could not mail you a welcome note yet; it is queued.", "error")
        return go("/login")

    async def welcome(mailreset: Mailreset, user: User) -> bool:
        """Mail a welcome note and await its delivery without blocking the event loop."""
        message = EmailMessage()
        message["From"] = settings["MAIL_DEFAULT_SENDER"]
        message["To"] = user.email
        message["Subject"] = f"Welcome to {settings['MAILRESET_APP_NAME']}"
        message.set_content("Your account is ready. If you did not sign up, ignore this mail.\n")
        future = asyncio.wrap_future(mailreset.mailer.send(message))
        # wait, not wait_for: a slow server must not cancel the delivery, only our wait.
        done, _ = await asyncio.wait({future}, timeout=float(settings["WELCOME_TIMEOUT"]))
        return bool(done) and future.exception() is None

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return render(request, "login.html")

    @app.post("/login", response_model=None)
    async def login(request: Request) -> Response:
        user = await asyncio.to_thread(
            users.authenticate, field(request, "email"), field(request, "password")
        )
        if user is None:
            flash(request, "Wrong email or password.", "error")
            return render(request, "login.html")
        state = request.state.session
        state.clear()  # a fresh session at log-in
        state.update(user_id=user.id, stamp=stamp(user), csrf=secrets.token_urlsafe(32))
        flash(request, f"Logged in as {user.email}.", "success")
        return go("/")

    @app.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        request.state.session.clear()
        flash(request, "Logged out.", "success")
        return go("/")

    @app.get("/forgot", response_class=HTMLResponse)
    async def forgot_form(request: Request) -> HTMLResponse:
        return render(request, "forgot.html")

    @app.post("/forgot")
    async def forgot(request: Request, reset: Flow) -> RedirectResponse:
        client = request.client.host if request.client else None
        reset.request(field(request, "email"), client=client)  # only enqueues: never blocks
        minutes = round(int(settings.get("MAILRESET_MAX_AGE", 600)) / 60)
        # The same words whether or not the address has an account.
        flash(
            request,
            "If an account exists for that address, we have sent it a link to reset the "
            f"password. The link works for {minutes} minutes.",
            "success",
        )
        return go("/login")

    @app.api_route("/reset/{token}", methods=["GET", "POST"], response_model=None)
    async def reset_password(request: Request, token: str, reset: Flow) -> Response:
        try:
            # A GET consumes nothing: mail scanners cannot burn the link.
            await asyncio.to_thread(reset.check, token)
            if request.method == "POST":
                password = field(request, "password")
                if password != field(request, "confirm"):
                    flash(request, "The two passwords differ.", "error")
                else:
                    await asyncio.to_thread(reset.complete, token, password)
                    request.state.session.clear()
                    changed = "Your password was changed. Log in with the new one."
                    flash(request, changed, "success")
                    return go("/login")
        except WeakPassword as error:
            flash(request, f"Choose another password: {error}", "error")
        except ExpiredToken:
            flash(request, "This reset link has expired. Ask for a new one.", "error")
            return go("/forgot")
        except StaleToken:
            flash(request, "This reset link was already used. Ask for a new one.", "error")
            return go("/forgot")
        except InvalidToken:
            flash(request, "This reset link is not valid. Ask for a new one.", "error")
            return go("/forgot")
        page = render(request, "reset.html", token=token)
        # The page must not leak its URL (and token) to other sites or caches.
        page.headers["Referrer-Policy"] = "no-referrer"
        page.headers["Cache-Control"] = "no-store"
        return page

    return app
