"""A small Django project with sign-up, log-in and the whole password-reset flow.

``adapter.py`` (the UserStore over ``get_user_model()`` and the flow) and ``mail_backend.py``
(an ``EMAIL_BACKEND`` over mailreset's mailers) are the parts to copy.
"""
