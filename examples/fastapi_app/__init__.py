"""The FastAPI example: the whole password-reset flow with async routes (see README.md)."""
