"""Spool replay: what an earlier process left in the spool goes back on the queue."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mailreset.spool import Spool, SpooledMessage

log = logging.getLogger("mailreset")


def replay(spool: Spool, put: Callable[[SpooledMessage], None], done: threading.Event) -> None:
    """Claim each leftover of ``spool`` and ``put`` it on the queue; set ``done`` at the end.

    Runs in its own thread; an error stops the replay but never the mailer: what was not
    queued stays on disk for the next start.
    """
    try:
        count = 0
        for left in spool.leftovers():
            put(left)
            count += 1
        if count:
            log.info("queued %d message(s) left in the spool %s", count, spool.path)
    except Exception:
        log.exception("the spool replay stopped; the rest stays on disk for the next start")
    finally:
        done.set()
