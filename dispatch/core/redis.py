"""Redis client and key names. One hash tag per region keeps Redis Cluster possible."""

from __future__ import annotations

import uuid
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

Redis = aioredis.Redis


REDIS_SOCKET_TIMEOUT_S = 5.0


REDIS_MAX_CONNECTIONS = 512


def create_redis(url: str) -> Redis:
    # Timeouts so a half-open connection fails a command (and reconnects) instead of hanging.
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        retry_on_timeout=True,
        # redis-py's default cap (100) ran out under a lagging load test; Redis allows 10,000.
        max_connections=REDIS_MAX_CONNECTIONS,
    )


class RegionKeys:
    """Every key of one region shares the `{region}` hash tag (one cluster slot)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.prefix = f"coop:{{{region}}}"
        self.drivers_geo = f"{self.prefix}:drivers:geo"
        self.drivers_seen = f"{self.prefix}:drivers:seen"

    def user_channel(self, user_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:user:{user_id}"


async def send_packed(redis: Redis, packed: bytes, replies: int) -> None:
    """Write pre-packed commands on one pooled connection and read their replies.

    hiredis packs in C: redis-py's own packer, in Python, cost more than Redis's work for the
    large commands that position writes and batch publishes are.
    """
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await connection.send_packed_command(packed)
        for _ in range(replies):
            await connection.read_response()
    except BaseException:
        # A reply may be left unread: the connection is not reused.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


def get_redis(request: Request) -> Redis:
    client: Redis = request.app.state.redis
    return client


RedisDep = Annotated[Redis, Depends(get_redis)]
