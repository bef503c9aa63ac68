"""``python -m examples.fastapi_app``: run the FastAPI example on http://127.0.0.1:8000."""

from __future__ import annotations

import os
import secrets

import uvicorn

from examples.fastapi_app.app import create_app

if __name__ == "__main__":
    settings = {key: value for key, value in os.environ.items() if key.startswith("MAIL")}
    settings["SECRET_KEY"] = os.environ.get("EXAMPLE_SECRET_KEY") or secrets.token_hex(32)
    settings.setdefault("MAILRESET_SECRET_KEY", secrets.token_hex(32))
    # The lifespan closes the mailer (and delivers what is queued) when uvicorn stops.
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000)
