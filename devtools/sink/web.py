"""The debug sink's web viewer and JSON API, on the standard library's ``http.server``.

Routes (``{id}`` is a message id from the list):

- ``GET /``: the viewer, a page with one small script that follows ``/api/events``.
- ``GET /api/messages?q=...``: ``{"total": N, "messages": [...]}``, newest first; each item has
  ``id``, ``from`` (the envelope sender), ``from_header`` (the From header, name and address),
  ``to``, ``subject``, ``received_at``, ``size`` (an ETag makes asking again cheap). ``q``
  searches (:mod:`devtools.sink.search`: ``to:``, ``from:``, ``subject:``, plain words).
- ``GET /api/messages/wait?q=...&timeout=S[&since=ISO]``: the newest matching message in full
  (as below), at once if one is there (received at or after ``since``), else as soon as one
  arrives; 404 after ``timeout`` seconds (default 30, at most 300).
- ``GET /api/events``: server-sent events, a ``change`` event (``{"version", "total"}``)
  whenever a message arrives or is deleted, and a comment line every 15 s to keep it open.
- ``GET /api/messages/{id}``: the item plus ``text``, ``html``, ``headers``, ``links``,
  ``attachments``. An unknown id is a 404 everywhere.
- ``GET /api/messages/{id}/raw``: the source as text; ``/eml``: the same as a download.
- ``GET /api/messages/{id}/html``: the HTML part for the viewer's sandboxed iframe.
- ``GET /api/messages/{id}/attachments/{n}``: one attachment, always as a download.
- ``DELETE /api/messages/{id}``, ``DELETE /api/messages``: delete one, delete all.

Message HTML is hostile input. It is shown in an iframe whose ``sandbox`` leaves scripts off
and is served with a Content-Security-Policy that forbids scripts and every remote load
(tracking pixels included) and sandboxes it again should it be opened on its own. The
viewer builds its page with ``textContent`` only, never from message markup. On loopback the
server answers only to loopback ``Host`` names, so a web page cannot reach it through DNS
rebinding, and it refuses cross-origin deletes.

Connections are bounded: at most ``max_connections`` are served at once (each by a thread)
and more get an immediate 503; a connection idle for ``idle_timeout`` seconds is closed, and
at most ``max_streams`` of them may be event streams or waits. So open, idle connections
cannot pile up threads.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devtools.sink.search import Query
from devtools.sink.store import SinkStore, StoredMessage
from mailreset.testing import CapturedMessage

__all__ = ["MESSAGE_CSP", "VIEWER_CSP", "SinkWebServer", "message_detail", "message_item"]

STATIC = Path(__file__).with_name("static")

#: The viewer page: its own script and stylesheet only, frames from itself, no remote loads.
VIEWER_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: A message's HTML: no scripts, nothing remote, inline styles and data: images only, sandboxed.
MESSAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; font-src data:; "
    "form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)
_ROUTE = re.compile(
    r"^/api/messages(?:/(?P<id>[A-Za-z0-9_-]{1,80})"
    r"(?:/(?P<part>raw|eml|html|attachments/(?P<index>\d{1,4})|cid/(?P<cid>[^/]{1,200})))?)?/?$"
)
_CID_SRC = re.compile(r"""(src\s*=\s*["']?)cid:""", re.IGNORECASE)
_STATIC_TYPES = {
    "/static/app.js": "text/javascript; charset=utf-8",
    "/static/app.css": "text/css; charset=utf-8",
}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
#: Seconds between keep-alive comments on an event stream (proxies drop silent ones).
HEARTBEAT_SECONDS = 15.0
#: The longest ``timeout`` the wait endpoint accepts, and its default.
MAX_WAIT_SECONDS = 300.0
DEFAULT_WAIT_SECONDS = 30.0


def message_item(stored: StoredMessage) -> dict[str, Any]:
    """The list item of ``GET /api/messages`` for one message, from its index entry alone."""
    summary = stored.summary
    return {
        "id": stored.id,
        "from": summary.sender,
        "from_header": summary.from_header,
        "to": list(summary.recipients),
        "subject": summary.subject,
        "received_at": stored.received_at.astimezone(timezone.utc).isoformat(),
        "size": stored.size,
    }


def message_detail(stored: StoredMessage) -> dict[str, Any]:
    """The body of ``GET /api/messages/{id}``: the list item plus the parsed content.

    Raises :class:`OSError` when the message's file is gone.
    """
    message = stored.message
    detail = message_item(stored)
    attachments = _quietly(message.attachments, [])
    detail.update(
        text=_quietly(lambda: message.text, ""),
        html=_quietly(lambda: message.html, ""),
        headers=[
            {"name": name, "value": value} for name, value in _quietly(lambda: message.headers, ())
        ],
        links=list(_quietly(lambda: message.links, ())),
        attachments=[
            {
                "index": index,
                "filename": filename,
                "content_type": content_type,
                "size": len(payload),
                "url": f"/api/messages/{stored.id}/attachments/{index}",
            }
            for index, (filename, content_type, payload) in enumerate(attachments)
        ],
    )
    return detail


def _quietly(read: Any, default: Any) -> Any:
    # A malformed message must still be listed and viewable: a field that cannot be parsed
    # is shown empty (the raw source is always there) instead of failing the request.
    try:
        return read()
    except Exception:
        return default


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, but never more than ``max_connections`` threads.

    A connection beyond the limit gets a 503 at once from the accepting thread, instead of
    a thread that would wait for it (the viewer must not grow a thread per idle socket).
    """

    daemon_threads = True
    # socketserver's default backlog of 5 drops the handshakes of a burst (a browser opens
    # six connections at once), which then wait a second for a SYN retransmit.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[_Handler], limit: int) -> None:
        super().__init__(address, handler)
        self.max_connections = limit
        self._slots = threading.BoundedSemaphore(limit)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse(request, f"the viewer serves {self.max_connections} connections at once")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _refuse(request: socket.socket, reason: str) -> None:
    body = json.dumps({"error": f"busy: {reason}; try again"}).encode("utf-8")
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        # The accepting thread must not hang on a client that reads nothing.
        request.settimeout(0.5)
        request.sendall(head.encode("ascii") + body)
    except OSError:
        pass


class SinkWebServer:
    """The viewer and the JSON API for ``store``, served from a background thread.

    ``host``/``port`` is where it listens (port 0: any free port). ``allow_remote`` turns off
    the loopback ``Host`` check, for the explicit ``--allow-remote`` mode. At most
    ``max_connections`` connections are served at once, at most ``max_streams`` of them
    event streams or waits; one idle for ``idle_timeout`` seconds is closed.
    """

    def __init__(
        self,
        store: SinkStore,
        *,
        host: str = "127.0.0.1",
        port: int = 8026,
        allow_remote: bool = False,
        max_connections: int = 64,
        max_streams: int = 32,
        idle_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.allow_remote = allow_remote
        self._items: dict[str, dict[str, Any]] = {}
        self._items_lock = threading.Lock()
        self._streams = threading.BoundedSemaphore(max_streams)
        self._open_streams = 0
        self._open_lock = threading.Lock()
        self.max_streams = max_streams
        self._closing = threading.Event()
        handler = type("Handler", (_Handler,), {"app": self, "timeout": idle_timeout})
        self._server = _BoundedHTTPServer((host, port), handler, max_connections)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The viewer's address."""
        host = self.host
        if host in {"0.0.0.0", "::"}:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> SinkWebServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="sink-web", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; open event streams and waits end too."""
        self._closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    @property
    def closing(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._closing.is_set()

    @property
    def open_streams(self) -> int:
        """How many event streams and waits are open now."""
        with self._open_lock:
            return self._open_streams

    def stream_slot(self) -> bool:
        """Take one of the ``max_streams`` slots for a long request; False when none is free."""
        if not self._streams.acquire(blocking=False):
            return False
        with self._open_lock:
            self._open_streams += 1
        return True

    def release_stream_slot(self) -> None:
        """Give back a slot taken with :meth:`stream_slot`."""
        with self._open_lock:
            self._open_streams -= 1
        self._streams.release()

    def list_body(self, query: Query | None = None) -> dict[str, Any]:
        """The body of ``GET /api/messages``; items are computed once per message."""
        entries = self.store.entries()
        if query is not None and query.terms:
            entries = [entry for entry in entries if query.matches(entry.summary)]
        with self._items_lock:
            items = []
            for entry in entries:
                item = self._items.get(entry.id)
                if item is None:
                    item = self._items[entry.id] = message_item(entry)
                items.append(item)
            if len(self._items) > 2 * len(self.store) + 100:
                alive = {entry.id for entry in self.store.entries()}
                self._items = {key: value for key, value in self._items.items() if key in alive}
        return {"total": len(items), "messages": items}


class _Handler(BaseHTTPRequestHandler):
    app: SinkWebServer
    server_version = "mailreset-sink"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # The terminal belongs to the message blocks; requests are not worth a line each.
        return

    # -- dispatch -------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._host_allowed():
            return
        path = urlsplit(self.path).path
        if path in {"/", "/index.html"}:
            self._static(STATIC / "index.html", "text/html; charset=utf-8")
            return
        if path in _STATIC_TYPES:
            self._static(STATIC / path.rsplit("/", 1)[1], _STATIC_TYPES[path])
            return
        if path == "/api/events":
            self._long(self._events)
            return
        if path.rstrip("/") == "/api/messages/wait":
            self._long(self._wait)
            return
        match = _ROUTE.match(path)
        if match is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
            return
        if match["id"] is None:
            self._list()
            return
        stored = self.app.store.get(match["id"])
        if stored is None:
            self._error(HTTPStatus.NOT_FOUND, f"no message with id {match['id']!r}")
            return
        part = match["part"]
        if part is None:
            self._detail(stored)
            return
        try:
            message = stored.message  # read once: from disk for a large message
        except OSError:
            self._error(HTTPStatus.NOT_FOUND, f"the file of message {stored.id} is gone")
            return
        if part == "raw":
            self._send(
                HTTPStatus.OK,
                message.raw,
                "text/plain; charset=utf-8",
                {"Content-Security-Policy": "default-src 'none'; sandbox"},
            )
        elif part == "eml":
            self._send(
                HTTPStatus.OK,
                message.raw,
                "message/rfc822",
                {"Content-Disposition": f'attachment; filename="{stored.id}.eml"'},
            )
        elif part == "html":
            self._html(stored.id, message)
        elif match["index"] is not None:
            self._attachment(stored.id, message, int(match["index"]))
        else:
            self._inline_image(stored.id, message, unquote(match["cid"]))

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_DELETE(self) -> None:
        if not self._drain_body() or not self._host_allowed() or not self._same_origin():
            return
        match = _ROUTE.match(urlsplit(self.path).path)
        if match is None or match["part"] is not None:
            self._error(HTTPStatus.NOT_FOUND, "DELETE works on /api/messages and one message")
            return
        if match["id"] is None:
            deleted = len(self.app.store)
            self.app.store.clear()
            self._json({"deleted": deleted})
        elif self.app.store.delete(match["id"]):
            self._json({"deleted": 1})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no message with id {match['id']!r}")

    def do_POST(self) -> None:
        if not self._drain_body():
            return
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "the API takes GET and DELETE")

    do_PUT = do_PATCH = do_OPTIONS = do_POST

    # -- pages ----------------------------------------------------------------------------

    def _list(self) -> None:
        query = self._query()
        version = self.app.store.version
        etag = f'"v{version}"'
        if self.headers.get("If-None-Match") == etag:
            self._send(HTTPStatus.NOT_MODIFIED, b"", None, {"ETag": etag})
            return
        body = json.dumps(self.app.list_body(query)).encode("utf-8")
        self._send(HTTPStatus.OK, body, "application/json", {"ETag": etag})

    def _detail(self, stored: StoredMessage) -> None:
        try:
            detail = message_detail(stored)
        except OSError:
            self._error(HTTPStatus.NOT_FOUND, f"the file of message {stored.id} is gone")
            return
        self._json(detail)

    def _long(self, serve: Any) -> None:
        # Event streams and waits hold their thread for long: they get slots of their own,
        # so they can never take every connection the viewer has.
        if not self.app.stream_slot():
            self.close_connection = True
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{self.app.max_streams} event streams and waits are open already",
            )
            return
        try:
            serve()
        finally:
            self.app.release_stream_slot()

    def _wait(self) -> None:
        query = self._query()
        params = parse_qs(urlsplit(self.path).query)
        try:
            timeout = float(params.get("timeout", [DEFAULT_WAIT_SECONDS])[0])
            since_text = params.get("since", [None])[0]
            since = None if since_text is None else _aware(datetime.fromisoformat(since_text))
        except ValueError:
            self._error(
                HTTPStatus.BAD_REQUEST,
                "timeout must be a number of seconds and since an ISO 8601 time",
            )
            return
        if not 0 <= timeout <= MAX_WAIT_SECONDS:
            self._error(
                HTTPStatus.BAD_REQUEST, f"timeout must be between 0 and {MAX_WAIT_SECONDS:g} s"
            )
            return
        deadline = time.monotonic() + timeout
        version, entries = self.app.store.snapshot()
        while True:
            found = next(
                (
                    entry
                    for entry in entries
                    if (since is None or entry.received_at >= since)
                    and query.matches(entry.summary)
                ),
                None,
            )
            if found is not None:
                self._detail(found)
                return
            left = deadline - time.monotonic()
            if left <= 0 or self.app.closing:
                self._error(
                    HTTPStatus.NOT_FOUND,
                    f"no message matching {str(query)!r} within {timeout:g} s",
                )
                return
            # Wake once a second at most to notice the server stopping.
            version = self.app.store.wait_changed(version, min(left, 1.0))
            version, entries = self.app.store.snapshot()

    def _events(self) -> None:
        self.close_connection = True  # the stream ends only with the connection
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command == "HEAD":
            return
        store = self.app.store
        seen = -1
        quiet_since = time.monotonic()
        try:
            # Reconnect a second after the sink restarts (EventSource's default is 3 s).
            self.wfile.write(b"retry: 1000\n\n")
            while not self.app.closing:
                version = store.wait_changed(seen, 1.0)
                if version != seen:
                    seen = version
                    data = json.dumps({"version": version, "total": len(store)})
                    self.wfile.write(f"event: change\ndata: {data}\n\n".encode())
                elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    continue
                self.wfile.flush()
                quiet_since = time.monotonic()
        except OSError:
            return  # the viewer went away (closed tab, timeout on a stuck client)

    def _query(self) -> Query:
        values = parse_qs(urlsplit(self.path).query).get("q", [""])
        return Query.parse(values[0])

    def _html(self, message_id: str, message: CapturedMessage) -> None:
        html = _quietly(lambda: message.html, "")
        if not html:
            html = (
                "<p style='font-family:sans-serif;color:#666'>This message has no HTML part.</p>"
            )
        # Links open in a new tab (the sandbox lets popups escape it) instead of in the frame.
        page = '<base target="_blank">' + _CID_SRC.sub(
            lambda match: f"{match[1]}/api/messages/{message_id}/cid/", html
        )
        self._send(
            HTTPStatus.OK,
            page.encode("utf-8", "replace"),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": MESSAGE_CSP, "Referrer-Policy": "no-referrer"},
        )

    def _attachment(self, message_id: str, message: CapturedMessage, index: int) -> None:
        attachments = _quietly(message.attachments, [])
        if index >= len(attachments):
            self._error(HTTPStatus.NOT_FOUND, f"message {message_id} has no attachment {index}")
            return
        filename, _, payload = attachments[index]
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or f"attachment-{index}"
        # Always a download of opaque bytes: an attachment's declared type is not trusted.
        self._send(
            HTTPStatus.OK,
            payload,
            "application/octet-stream",
            {"Content-Disposition": f'attachment; filename="{safe_name}"'},
        )

    def _inline_image(self, message_id: str, message: CapturedMessage, cid: str) -> None:
        def find() -> tuple[str, bytes] | None:
            for part in message.message.walk():
                content_id = str(part.get("Content-ID", "")).strip().strip("<>")
                if content_id == cid and part.get_content_maintype() == "image":
                    payload = part.get_payload(decode=True)
                    if isinstance(payload, bytes):
                        return part.get_content_type(), payload
            return None

        found = _quietly(find, None)
        if found is None:
            self._error(HTTPStatus.NOT_FOUND, f"message {message_id} has no image <{cid}>")
            return
        self._send(HTTPStatus.OK, found[1], found[0], {"Content-Security-Policy": "sandbox"})

    def _static(self, path: Path, content_type: str) -> None:
        self._send(
            HTTPStatus.OK,
            path.read_bytes(),
            content_type,
            {"Content-Security-Policy": VIEWER_CSP},
        )

    # -- plumbing -------------------------------------------------------------------------

    def _drain_body(self) -> bool:
        # A request body must be read off a kept-alive connection, or it would be taken for
        # the next request; the API never needs one, so a large one just ends the connection.
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= 1 << 20:
            self.rfile.read(length)
            return True
        self.close_connection = True
        self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the API takes no request body")
        return False

    def _host_allowed(self) -> bool:
        if self.app.allow_remote:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or "]" in host else host
        name = name.strip("[]")
        if name in _LOOPBACK_NAMES or _is_loopback(name):
            return True
        self._error(HTTPStatus.FORBIDDEN, f"this viewer answers loopback names only, not {host!r}")
        return False

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None or urlsplit(origin).netloc == (self.headers.get("Host") or ""):
            return True
        self._error(HTTPStatus.FORBIDDEN, "cross-origin requests may not delete messages")
        return False

    def _json(self, body: dict[str, Any]) -> None:
        self._send(HTTPStatus.OK, json.dumps(body).encode("utf-8"), "application/json")

    def _error(self, status: HTTPStatus, text: str) -> None:
        body = json.dumps({"error": text}).encode("utf-8")
        self._send(status, body, "application/json")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        headers = {"Cache-Control": "no-cache", **(headers or {})}
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name, value)
        if status != HTTPStatus.NOT_MODIFIED:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status != HTTPStatus.NOT_MODIFIED:
            self.wfile.write(body)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name.endswith(".localhost")
