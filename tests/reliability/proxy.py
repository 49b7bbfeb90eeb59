"""A small fault-injecting TCP proxy (asyncio) to put between the app and Redis / PostgreSQL, or
between a client and the API.

Faults, switched on and off while traffic flows:
- `delay(s)`: every chunk waits `s` seconds before it is forwarded, in both directions (latency).
- `drop()`: bytes are silently discarded both ways, and new connections are accepted but never
  reach the server (a firewall dropping packets: nothing fails, everything waits).
- `reset()`: every open connection is reset (TCP RST) and new ones are reset at once, until
  `heal()` (the server crashed or a middlebox killed the flows).
- `half_open(direction)`: open connections stop carrying bytes without closing; new connections
  work (the peer vanished or a NAT forgot the flow). `direction="downstream"` loses only what the
  server sends back: requests arrive and take effect, their answers never return.
- `heal()`: a clean pipe again (connections that were half-opened stay dead, like real ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["both", "upstream", "downstream"]


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    dead: set[str] = field(default_factory=set)  # directions black-holed for good
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.latency = 0.0
        self.dropping = False
        self.resetting = False
        self.links: set[_Link] = set()
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            self._close(link)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # --- faults --------------------------------------------------------------------------
    def delay(self, seconds: float) -> None:
        self.latency = seconds

    def drop(self) -> None:
        self.dropping = True

    def reset(self) -> None:
        self.resetting = True
        for link in list(self.links):
            _rst(link.client)
            if link.server is not None:
                _rst(link.server)
            self._close(link)

    def half_open(self, direction: Direction = "both") -> None:
        for link in self.links:
            link.dead |= {"upstream", "downstream"} if direction == "both" else {direction}

    def heal(self) -> None:
        self.latency = 0.0
        self.dropping = False
        self.resetting = False

    # --- plumbing ------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.resetting:
            _rst(writer)
            return
        link = _Link(client=writer)
        self.links.add(link)
        if self.dropping:
            link.dead |= {"upstream", "downstream"}
            link.tasks.append(asyncio.create_task(self._pump(link, reader, None, "upstream")))
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _rst(writer)
            self.links.discard(link)
            return
        link.server = server_writer
        link.tasks += [
            asyncio.create_task(self._pump(link, reader, server_writer, "upstream")),
            asyncio.create_task(self._pump(link, server_reader, writer, "downstream")),
        ]

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter | None,
        direction: str,
    ) -> None:
        try:
            while True:
                data = await source.read(65536)
                if not data:
                    break
                if self.latency:
                    await asyncio.sleep(self.latency)
                if self.dropping or direction in link.dead or sink is None:
                    continue
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if direction not in link.dead and not self.dropping:
                self._close(link)

    def _close(self, link: _Link) -> None:
        self.links.discard(link)
        for writer in (link.client, link.server):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()


@contextlib.asynccontextmanager
async def fault_proxy(host: str, port: int) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
