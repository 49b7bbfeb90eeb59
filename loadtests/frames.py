"""WebSocket framing by hand (RFC 6455), for clients that must control every byte: the ingest
benchmark's generator (with the `websockets` library it spent more CPU per message than the
server it measured) and tests that write many frames at once or play a peer that never answers.

Client frames are masked with the all-zero key, which the RFC lets a server accept: the payload
goes out as is. Server frames are unmasked. No extensions (permessage-deflate) are offered.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterable, Iterator

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One final, masked client frame of any size."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def upgrade_request(host: str, path: str, token: str = "", headers: Iterable[str] = ()) -> bytes:
    """The opening handshake for `path` on `host` ("host:port"), with a bearer token if given
    and any further header lines ("Name: value")."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
    ]  # fmt: skip
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def server_frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """Each whole server frame at the start of `buffer` as (opcode, payload), removed from the
    buffer as it is yielded; a partial frame stays for the next read."""
    while len(buffer) >= 2:
        size, start = buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                return
            size, start = int.from_bytes(buffer[2:4], "big"), 4
        elif size == 127:
            if len(buffer) < 10:
                return
            size, start = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < start + size:
            return
        opcode = buffer[0] & 0x0F
        payload = bytes(buffer[start : start + size])
        del buffer[: start + size]
        yield opcode, payload


async def read_server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next server frame from a stream, as (opcode, payload)."""
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(size)
