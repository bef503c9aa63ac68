"""The Django example's views: sign up, log in, log out, forgot password, reset password.

CSRF is Django's (``CsrfViewMiddleware`` and ``{% csrf_token %}``); sessions and log-in are
``django.contrib.auth``'s, so a new password ends the user's other sessions by itself (the
session carries a hash of the password hash).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, get_user_model, login, logout
from django.core.mail import send_mail
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from examples.django_app.adapter import reset_flow
from mailreset import (
    ExpiredToken,
    InvalidToken,
    MailresetError,
    StaleToken,
    WeakPassword,
    normalize_email,
)

logger = logging.getLogger(__name__)
RESET_TOKEN = "mailreset.token"  # the session key of the token between the link and the form


def index(request: HttpRequest) -> HttpResponse:
    """The home page."""
    return render(request, "index.html")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Make an account (its user name is the normalised address) and mail a welcome."""
    if request.method != "POST":
        return render(request, "signup.html", {"email": ""})
    email = request.POST.get("email", "").strip()
    password = request.POST.get("password", "")
    try:
        reset_flow().password_policy(password, email=email)
    except WeakPassword as error:
        messages.error(request, f"Choose another password: {error}")
        return render(request, "signup.html", {"email": email})
    key = normalize_email(email)
    try:
        if "@" not in email or len(key) > 150:
            raise IntegrityError
        get_user_model().objects.create_user(  # type: ignore[attr-defined]
            username=key, email=email, password=password
        )
    except IntegrityError:
        messages.error(request, "That address cannot be used. Log in or reset your password.")
        return render(request, "signup.html", {"email": email})
    # Django's own send_mail, through the mailreset backend: queued, not waited on. A mail that
    # cannot be queued must not undo the account (what fail_silently did before Django 6.1).
    try:
        send_mail(
            f"Welcome to {settings.MAILRESET_APP_NAME}",
            "Your account is ready. If you did not sign up, ignore this mail.\n",
            None,
            [email],
        )
    except (MailresetError, ValueError):
        logger.exception("welcome mail not queued")
    messages.success(request, "Account created. Log in.")
    return redirect("login")


@require_http_methods(["GET", "POST"])
def log_in(request: HttpRequest) -> HttpResponse:
    """Log in with address and password (a fresh session and CSRF token, by Django)."""
    if request.method != "POST":
        return render(request, "login.html")
    email = request.POST.get("email", "")
    user = authenticate(
        request, username=normalize_email(email), password=request.POST.get("password", "")
    )
    if user is None:
        messages.error(request, "Wrong email or password.")
        return render(request, "login.html")
    login(request, user)
    messages.success(request, f"Logged in as {user.email}.")  # type: ignore[attr-defined]
    return redirect("index")


@require_POST
def log_out(request: HttpRequest) -> HttpResponse:
    """Log out (a POST with the CSRF token: no log-out by a foreign link)."""
    logout(request)
    messages.success(request, "Logged out.")
    return redirect("index")


@require_http_methods(["GET", "POST"])
def forgot(request: HttpRequest) -> HttpResponse:
    """Ask for a reset link: the same answer whether or not the address has an account."""
    if request.method != "POST":
        return render(request, "forgot.html")
    # Behind a proxy, put the client's address in REMOTE_ADDR (with a known number of hops).
    reset_flow().request(request.POST.get("email"), client=request.META.get("REMOTE_ADDR"))
    minutes = round(getattr(settings, "MAILRESET_MAX_AGE", 600) / 60)
    messages.success(
        request,
        "If an account exists for that address, we have sent it a link to reset the "
        f"password. The link works for {minutes} minutes.",
    )
    return redirect("login")


@require_GET
def reset(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the mail: check the token, keep it in the session, go to the form.

    As Django's own ``PasswordResetConfirmView`` does, the form's page has no token in its URL,
    so that the page can send a Referer to its own site: Django's CSRF check needs the
    ``Origin`` header that browsers send as ``null`` under ``Referrer-Policy: no-referrer``.
    A GET consumes nothing: mail scanners that open the link cannot burn it.
    """
    try:
        reset_flow().check(token)
    except InvalidToken as error:
        return _no_referrer(_dead_link(request, error))
    request.session[RESET_TOKEN] = token
    return _no_referrer(redirect("reset_form"))


@require_http_methods(["GET", "POST"])
def reset_form(request: HttpRequest) -> HttpResponse:
    """The new password, twice; sets it with the token kept in the session."""
    token = request.session.get(RESET_TOKEN, "")
    flow = reset_flow()
    try:
        flow.check(token)
        if request.method == "POST":
            password = request.POST.get("password", "")
            if password != request.POST.get("confirm", ""):
                messages.error(request, "The two passwords differ.")
            else:
                flow.complete(token, password)
                logout(request)  # also forgets the token
                messages.success(request, "Your password was changed. Log in with the new one.")
                return redirect("login")
    except WeakPassword as error:
        messages.error(request, f"Choose another password: {error}")
    except InvalidToken as error:
        return _dead_link(request, error)
    response = render(request, "reset.html")
    response["Cache-Control"] = "no-store"
    return response


def _dead_link(request: HttpRequest, error: InvalidToken) -> HttpResponse:
    """Say why the link is dead (ExpiredToken, StaleToken or else) and offer a new one."""
    if isinstance(error, ExpiredToken):
        messages.error(request, "This reset link has expired. Ask for a new one.")
    elif isinstance(error, StaleToken):
        messages.error(request, "This reset link was already used. Ask for a new one.")
    else:
        messages.error(request, "This reset link is not valid. Ask for a new one.")
    request.session.pop(RESET_TOKEN, None)
    return redirect("forgot")


def _no_referrer(response: HttpResponse) -> HttpResponse:
    """A response to the token's URL must not leak it to other sites or caches."""
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response
