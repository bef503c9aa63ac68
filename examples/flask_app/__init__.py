"""A small Flask app with sign-up, log-in and the whole password-reset flow."""
