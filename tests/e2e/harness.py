"""Real server processes and real WebSocket clients for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from loadtests.frames import CLOSE, client_frame, read_server_frame, upgrade_request
from tests.conftest import PASSWORD, TEST_JWT_SECRET, bearer

ROOT = Path(__file__).resolve().parents[2]
# Two points in the demo co-op's region (New York), as the API takes them.
TIMES_SQUARE = {"lat": 40.7580, "lng": -73.9855}
WALL_STREET = {"lat": 40.7061, "lng": -74.0087}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    def stop(self, sig: int = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def start_api(self, name: str, log_level: str = "warning") -> Process:
        port = free_port()
        process = self._spawn(
            name, ["api", "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
        )
        process.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{process.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{process.url}/readyz", timeout=1).status_code == 200:
                    return process
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready:\n{process.log.read_text()}")

    def start_dispatcher(self, name: str) -> Process:
        return self._spawn(name, ["dispatcher", "--log-level", "info"])

    def _spawn(self, name: str, args: list[str]) -> Process:
        log = self.tmp / f"{name}.log"
        popen = subprocess.Popen(
            [sys.executable, "-m", "dispatch.cli", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@contextlib.contextmanager
def running_stack(tmp: Path, **settings: str) -> Iterator[Stack]:
    env = dict(os.environ)
    env.update({f"COOP_{key.upper()}": value for key, value in settings.items()})
    stack = Stack(tmp=tmp, env=env)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def base(stack: Stack) -> str:
    """The URL of the first API process of the module's `stack` (a module-scoped fixture)."""
    url = stack.processes[0].url
    assert url is not None
    return url


def register(base: str, role: str, name: str) -> dict[str, Any]:
    """A new account registered and logged in over a real API process: id, token and name."""
    email = f"{role}-{uuid.uuid4().hex[:10]}@e2e.coop"
    body: dict[str, Any] = {"email": email, "password": PASSWORD, "name": name, "role": role}
    if role == "driver":
        body["vehicle"] = {
            "make": "Toyota",
            "model": "Prius",
            "color": "white",
            "plate": f"E2E{name[:3]}",
        }
    created = httpx.post(f"{base}/v1/auth/register", json=body)
    assert created.status_code == 202, created.text
    token = httpx.post(f"{base}/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]
    me = httpx.get(f"{base}/v1/auth/me", headers=bearer(access))
    return {"id": me.json()["id"], "token": access, "name": name}


def forged(claims: dict[str, Any], secret: str = TEST_JWT_SECRET, alg: str = "HS256") -> str:
    """An access token with these claims over valid defaults, signed as given."""
    base_claims = {
        "iss": "coop-dispatch",
        "aud": "coop-dispatch-apps",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    return jwt.encode(base_claims | claims, secret, algorithm=alg)


def auth(account: dict[str, Any]) -> dict[str, str]:
    return bearer(account["token"])


class Socket:
    """A WebSocket client that records every message and lets a test wait for one."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.received: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @classmethod
    async def open(cls, base_url: str, path: str, token: str | None, query: str = "") -> Socket:
        url = base_url.replace("http://", "ws://") + path + (f"?{query}" if query else "")
        headers = bearer(token) if token else {}
        connection = await websockets.connect(url, additional_headers=headers, max_size=2**20)
        return cls(connection)

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await self.connection.send(json.dumps({"type": "pong"}))
                async with self._arrived:
                    self.received.append(message)
                    self._arrived.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.connection.close_code
            self.close_reason = self.connection.close_reason
            async with self._arrived:
                self._arrived.notify_all()

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def wait_for(self, kind: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        seen = 0

        def find() -> dict[str, Any] | None:
            nonlocal seen
            for message in self.received[seen:]:
                seen += 1
                if message.get("type") == kind and all(
                    message.get(k) == v for k, v in match.items()
                ):
                    return message
            return None

        deadline = asyncio.get_running_loop().time() + timeout
        async with self._arrived:
            while True:
                found = find()
                if found is not None:
                    return found
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or self._reader.done():
                    kinds = [m.get("type") for m in self.received]
                    raise AssertionError(f"no {kind} {match} within {timeout}s; got {kinds}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]

    async def close(self) -> None:
        await self.connection.close()
        with contextlib.suppress(Exception):
            await self._reader


async def online_socket(
    base: str, token: str, lat: float | None = None, lng: float | None = None
) -> Socket:
    """A driver's socket, online, and at (lat, lng) once the server acknowledged it if given."""
    socket = await Socket.open(base, "/v1/driver/ws", token)
    await socket.wait_for("hello")
    await socket.send({"type": "status", "status": "online"})
    await socket.wait_for("status", status="online")
    if lat is not None and lng is not None:
        await socket.send({"type": "location", "lat": lat, "lng": lng, "id": 1})
        await socket.wait_for("location.ack", id=1)
    return socket


async def raw_websocket(
    base_url: str, path: str, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand (loadtests/frames.py), for tests that must control every byte:
    one that writes many frames at once, or a peer that never answers."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(upgrade_request(f"{host}:{port}", path, token))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def text_frame(text: str) -> bytes:
    return client_frame(text.encode())


async def frames_until_close(reader: asyncio.StreamReader) -> tuple[list[str], int]:
    """The server's text frames up to its close frame, and the close code."""
    texts = []
    while True:
        opcode, payload = await read_server_frame(reader)
        if opcode == CLOSE:
            return texts, int.from_bytes(payload[:2], "big")
        texts.append(payload.decode())
