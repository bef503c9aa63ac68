"""Getting messages to a transport off the request path: mailers and their value objects.

One concern per module:

- ``_protocol``: the :class:`Mailer` protocol and how a final failure is reported;
- ``_retry``: :class:`Retry` and the loop that retries temporary failures;
- ``_sync``: :class:`SyncMailer`, sending in the caller's thread;
- ``_threaded``: :class:`ThreadedMailer`: its settings, queue, flush, close and fork handling;
- ``_pool``: its worker threads: when one more starts, when one leaves, how they stop;
- ``_jobs``: one queued message and how it ends (Future, spool file, ``on_failure``);
- ``_replay``: putting what an earlier process left in the spool back on the queue.

.. versionadded:: 0.1
"""

from mailreset._delivery import Delivery
from mailreset.mailers._protocol import Mailer
from mailreset.mailers._retry import Retry
from mailreset.mailers._sync import SyncMailer
from mailreset.mailers._threaded import ThreadedMailer

__all__ = ["Delivery", "Mailer", "Retry", "SyncMailer", "ThreadedMailer"]
