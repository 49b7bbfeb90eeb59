"""The baselines for location ingestion: a bare ASGI WebSocket endpoint writing to Redis.

No framework, no auth, no limits: each text frame `{"lat", "lng", "id"}` is written to the geo
index and answered `{"type": "location.ack", "id"}` once Redis has it. These are the issue's
"bare uvicorn endpoint" baselines; `loadtests.ingest` runs them under uvicorn with the same
WebSocket implementation as the API (`websockets-sansio`):

- one `GEOADD` per message (`--target bare`);
- with `BARE_GROUPED=1` (`--target bare-grouped`), the positions pending while a write is in
  flight go out as one multi-member `GEOADD`, then each is acknowledged.

    uvicorn loadtests.bare_geoadd:app --ws websockets-sansio --port 8900
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import redis.asyncio as aioredis

KEY = "coop:{bare}:drivers:geo"
POOL_SIZE = int(os.environ.get("BARE_REDIS_POOL", "4096"))
GROUPED = os.environ.get("BARE_GROUPED") == "1"
_redis: aioredis.Redis | None = None
_pending: dict[str, tuple[float, float]] = {}
_waiting: list[tuple[Any, Any]] = []
_wake = asyncio.Event()


async def _write_groups() -> None:
    global _pending, _waiting
    assert _redis is not None
    while True:
        await _wake.wait()
        _wake.clear()
        pending, waiting, _pending, _waiting = _pending, _waiting, {}, []
        geo: list[Any] = []
        for member, (lng, lat) in pending.items():
            geo.extend((lng, lat, member))
        await _redis.geoadd(KEY, geo)
        for send, message_id in waiting:
            ack = json.dumps({"type": "location.ack", "id": message_id})
            await send({"type": "websocket.send", "text": ack})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _redis
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                url = os.environ.get("COOP_REDIS_URL", "redis://127.0.0.1:6379/0")
                # Up to one Redis connection per concurrent command (one per socket at most).
                pool = aioredis.ConnectionPool.from_url(url, max_connections=POOL_SIZE)
                _redis = aioredis.Redis(connection_pool=pool, decode_responses=True)
                if GROUPED:
                    asyncio.get_running_loop().create_task(_write_groups())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _redis is not None:
                    await _redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        return
    assert _redis is not None
    member = scope.get("query_string", b"").decode() or "driver"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps({"type": "hello"})})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        data = json.loads(message.get("text") or "{}")
        if data.get("type") != "location":
            continue
        if GROUPED:
            _pending[member] = (data["lng"], data["lat"])
            _waiting.append((send, data["id"]))
            _wake.set()
            continue
        await _redis.geoadd(KEY, (data["lng"], data["lat"], member))
        await send(
            {
                "type": "websocket.send",
                "text": json.dumps({"type": "location.ack", "id": data["id"]}),
            }
        )
