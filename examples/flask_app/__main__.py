"""``python -m examples.flask_app``: run the Flask example on http://127.0.0.1:5000."""

from __future__ import annotations

import os
import secrets

from examples.flask_app.app import create_app

if __name__ == "__main__":
    app = create_app(
        {
            "SECRET_KEY": os.environ.get("EXAMPLE_SECRET_KEY") or secrets.token_hex(32),
            "MAILRESET_SECRET_KEY": os.environ.get("EXAMPLE_MAILRESET_SECRET_KEY")
            or secrets.token_hex(32),
        }
    )
    app.run(host="127.0.0.1", port=5000)
