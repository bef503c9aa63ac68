"""A loopback TCP relay that delays every chunk a fixed time each way: a WAN on one machine.

``DelayRelay(upstream_port, delay=0.010)`` listens on a free 127.0.0.1 port and forwards each
connection to ``127.0.0.1:upstream_port``. Every chunk read from one side is written to the
other ``delay`` seconds later, in order, without throttling what follows it: 10 ms each way
is a 20 ms round trip, whatever the client pipelines. It runs its own asyncio loop in a
daemon thread; ``start()`` returns once it listens, ``stop()`` closes it and every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

#: How long a relay waits for the upstream server to accept a connection.
CONNECT_TIMEOUT = 10.0
#: How long one direction may still deliver after the other one ended.
LINGER = 5.0


class DelayRelay:
    """Forward TCP from a loopback port to ``upstream``, each chunk ``delay`` seconds late."""

    def __init__(self, upstream_port: int, *, delay: float = 0.010, host: str = "127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.host = host
        self.delay = delay
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> DelayRelay:
        """Listen (on a free port, see ``.port``) and return once it does."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(10)
        return self

    def stop(self) -> None:
        """Stop listening, drop every relayed connection, stop the loop."""
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter):
        self.connections += 1
        try:
            server_in, server_out = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            client_out.close()
            return
        pumps = [
            asyncio.ensure_future(self._pump(client_in, server_out)),
            asyncio.ensure_future(self._pump(server_in, client_out)),
        ]
        self._tasks.update(pumps)
        try:
            # When one side is done, the other gets a bounded while to deliver what it holds.
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending, timeout=LINGER)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            for writer in (client_out, server_out):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One reader and one delayed writer per direction: chunks keep their order and each is
        # held back by the same delay from the moment it arrived.
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await chunks.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.write_eof() if writer.can_write_eof() else writer.close()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                chunks.put_nowait((time.monotonic() + self.delay, data))
                if not data:
                    break
            await delivering
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            delivering.cancel()
