"""The debug SMTP sink: ``python -m devtools.sink`` (or ``nox -s sink``).

A development mail catcher built on aiosmtpd and mailreset's capture core
(:mod:`mailreset.testing`): it prints one block per message in the terminal, keeps the last
messages in memory (and optionally as ``.eml`` files), and serves a web viewer and a JSON API.
It imports the installed ``mailreset`` like any user would and never ships in the wheel.

- :mod:`devtools.sink.store`: the bounded index of messages, bodies in memory or on disk.
- :mod:`devtools.sink.summary`: the index entry made per message on arrival.
- :mod:`devtools.sink.search`: the search language of the list, the wait and the viewer.
- :mod:`devtools.sink.terminal`: the block printed per message.
- :mod:`devtools.sink.web`: the viewer and the JSON API on ``http.server``.
- :mod:`devtools.sink.server`: wires them to :class:`mailreset.testing.SMTPSink`.
- :mod:`devtools.sink.__main__`: the command line.
"""
