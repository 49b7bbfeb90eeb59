"""Real processes for fault tests: a private Redis we may kill, an isolated region, drivers."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis
from sqlalchemy import text

from dispatch.core.database import transaction
from tests.e2e.harness import Socket, free_port
from tests.reliability.conftest import retire_regions_over

# Far from every other test's area, so real dispatchers only see this test's requests here.
E2E_CENTER = (30.5, 30.5)
E2E_AREA = "MULTIPOLYGON(((30 30, 31 30, 31 31, 30 31, 30 30)))"
RETIRED = "MULTIPOLYGON(((-60 -60, -59.9 -60, -59.9 -59.9, -60 -60)))"


class RedisServer:
    """A redis-server of our own on a free port, which a test may flush, kill and restart."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=(self.dir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if sync_redis.Redis(port=self.port).ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def flushall(self) -> None:
        sync_redis.Redis(port=self.port).flushall()


@contextlib.contextmanager
def private_redis(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextlib.asynccontextmanager
async def e2e_region(app: Any) -> AsyncIterator[str]:
    region_id = f"e-{uuid.uuid4().hex[:8]}"
    async with transaction(app.state) as session:
        await retire_regions_over(session, E2E_AREA)
        await session.execute(
            text(
                "INSERT INTO region (id, name, timezone, area) "
                "VALUES (:id, 'Fault town', 'UTC', ST_GeomFromText(:area, 4326))"
            ),
            {"id": region_id, "area": E2E_AREA},
        )
    try:
        yield region_id
    finally:
        async with transaction(app.state) as session:
            await session.execute(
                text("UPDATE region SET area = ST_GeomFromText(:area, 4326) WHERE id = :id"),
                {"id": region_id, "area": RETIRED},
            )
            await session.execute(
                text(
                    "UPDATE ride SET status = 'cancelled', ended_at = now() WHERE region_id = :id "
                    "AND status IN ('requested', 'matched', 'arrived', 'in_progress')"
                ),
                {"id": region_id},
            )


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def online_socket(base: str, token: str, lat: float, lng: float) -> Socket:
    socket = await Socket.open(base, "/v1/driver/ws", token)
    await socket.wait_for("hello")
    await socket.send({"type": "status", "status": "online"})
    await socket.wait_for("status", status="online")
    await socket.send({"type": "location", "lat": lat, "lng": lng, "id": 0})
    await socket.wait_for("location.ack", id=0)
    return socket


async def request_ride(http: httpx.AsyncClient, token: str, lat: float, lng: float) -> str:
    body = {"pickup": {"lat": lat, "lng": lng}, "dropoff": {"lat": lat + 0.02, "lng": lng + 0.02}}
    quote = await http.post("/v1/rider/quotes", json=body, headers=headers(token))
    assert quote.status_code == 201, quote.text
    ride = await http.post(
        "/v1/rider/rides", json={"quote_id": quote.json()["id"]}, headers=headers(token)
    )
    assert ride.status_code == 201, ride.text
    return str(ride.json()["id"])


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        await asyncio.sleep(interval)
