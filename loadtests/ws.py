"""A WebSocket client for gevent-based Locust users: one reader greenlet, an inbox, reconnects.

Built on websocket-client (blocking sockets, made cooperative by Locust's gevent monkey patching).
The reader answers the server's `ping` with `pong`, remembers the last durable `event_id` so a
reconnect asks for what it missed (`?after=`), and puts every other message in `inbox`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import gevent
import websocket
from gevent.queue import Queue

from loadtests import kpi

Closed = object()


class Socket:
    def __init__(self, base_url: str, path: str, token: str, name: str) -> None:
        self.url = base_url.replace("http://", "ws://").replace("https://", "wss://") + path
        self.token = token
        self.name = name
        self.inbox: Queue[Any] = Queue()
        self.last_event_id = 0
        self.connection: websocket.WebSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.closing = False
        self.on_drop: Callable[[], None] | None = None

    def connect(self, timeout: float = 30.0) -> bool:
        """Opens the socket and waits for `hello`; reports a `WS connect` sample either way."""
        started = time.monotonic()
        url = self.url + (f"?after={self.last_event_id}" if self.last_event_id else "")
        try:
            connection = websocket.create_connection(
                url,
                header=[f"Authorization: Bearer {self.token}"],
                timeout=timeout,
                enable_multithread=True,
                suppress_origin=True,  # a native app sends no Origin
            )
            opcode, data = connection.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise ConnectionError(_close_reason(data))
            hello = json.loads(data)
            if hello.get("type") != "hello":
                raise ConnectionError(f"expected hello, got {hello.get('type')}")
            connection.settimeout(None)
        except Exception as exc:
            kpi.fire(f"{self.name} connect", started, request_type=kpi.WS, failure=_describe(exc))
            return False
        kpi.fire(f"{self.name} connect", started, request_type=kpi.WS)
        self.connection = connection
        self.closing = False
        self.reader = gevent.spawn(self._read, connection)
        return True

    def _read(self, connection: websocket.WebSocket) -> None:
        while True:
            try:
                opcode, data = connection.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise ConnectionError(_close_reason(data))
            except Exception as exc:
                if not self.closing:
                    started = time.monotonic()
                    kpi.fire(
                        f"{self.name} closed", started, request_type=kpi.WS, failure=_describe(exc)
                    )
                    self.inbox.put(Closed)
                return
            if opcode != websocket.ABNF.OPCODE_TEXT or not data:
                continue
            raw = data
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            event_id = message.get("event_id")
            if isinstance(event_id, int) and event_id > self.last_event_id:
                self.last_event_id = event_id
            kind = message.get("type")
            if kind == "ping":
                self.send({"type": "pong"})
                continue
            if kind == "error":
                started = time.monotonic()
                kpi.fire(
                    f"{self.name} error {message.get('for', '')}".rstrip(),
                    started,
                    request_type=kpi.WS,
                    failure=str(message.get("error")),
                )
            self.inbox.put(message)

    def send(self, message: dict[str, Any]) -> bool:
        connection = self.connection
        if connection is None:
            return False
        try:
            connection.send(json.dumps(message))
        except Exception:
            return False
        return True

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.connected

    def close(self) -> None:
        self.closing = True
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close(timeout=1)
        if self.reader is not None:
            self.reader.kill(block=False)
        self.connection = None

    def reconnect(self, attempts: int = 5) -> bool:
        """Re-opens after a drop, with `?after=` so missed durable events are replayed."""
        started = time.monotonic()
        self.close()
        for attempt in range(attempts):
            if self.connect():
                kpi.fire(kpi.WS_RECONNECT, started)
                return True
            gevent.sleep(min(0.5 * 2**attempt, 5.0))
        kpi.fire(kpi.WS_RECONNECT, started, failure="gave up")
        return False


def _close_reason(data: bytes) -> str:
    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
    return f"closed {code}: {data[2:].decode(errors='replace')}".rstrip(": ")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, websocket.WebSocketBadStatusException):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, websocket.WebSocketConnectionClosedException):
        return "connection closed"
    if isinstance(exc, ConnectionError) and str(exc):
        return str(exc)
    return type(exc).__name__
