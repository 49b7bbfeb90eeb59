"""Real processes for fault tests: a private Redis we may kill, an isolated region, drivers."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import redis as sync_redis
from sqlalchemy import text

from dispatch.core.database import transaction
from tests.e2e.harness import free_port
from tests.fixtures.regions import E2E_SQUARE, own_region


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
    """A region over E2E_SQUARE for real dispatcher processes (`COOP_REGION`); its rides still
    open at the end are cancelled, so no later dispatcher there finds them."""
    async with own_region(app.state, E2E_SQUARE, "e", "Fault town") as region_id:
        try:
            yield region_id
        finally:
            async with transaction(app.state) as session:
                await session.execute(
                    text(
                        "UPDATE ride SET status = 'cancelled', ended_at = now() "
                        "WHERE region_id = :id "
                        "AND status IN ('requested', 'matched', 'arrived', 'in_progress')"
                    ),
                    {"id": region_id},
                )


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        await asyncio.sleep(interval)
