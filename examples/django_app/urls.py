"""The Django example's URLs."""

from __future__ import annotations

from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("", views.index, name="index"),
    path("signup", views.signup, name="signup"),
    path("login", views.log_in, name="login"),
    path("logout", views.log_out, name="logout"),
    path("forgot", views.forgot, name="forgot"),
    path("reset/form", views.reset_form, name="reset_form"),  # before the token's pattern
    path("reset/<str:token>", views.reset, name="reset"),
]
