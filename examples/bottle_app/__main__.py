"""``python -m examples.bottle_app``: run the Bottle example on http://127.0.0.1:8080."""

from __future__ import annotations

import os
import secrets

from examples.bottle_app.app import create_app

if __name__ == "__main__":
    app = create_app(
        {
            "SECRET_KEY": os.environ.get("EXAMPLE_SECRET_KEY") or secrets.token_hex(32),
            "MAILRESET_SECRET_KEY": os.environ.get("EXAMPLE_MAILRESET_SECRET_KEY")
            or secrets.token_hex(32),
        }
    )
    try:
        app.run(host="127.0.0.1", port=8080)
    finally:
        app.close()
