"""The baseline for location ingestion: a bare ASGI WebSocket endpoint, one GEOADD per message.

No framework, no auth, no limits: each text frame `{"lat", "lng", "id"}` is written with its own
`GEOADD` and answered `{"type": "location.ack", "id"}` once Redis has it. This is what the issue's
"bare uvicorn endpoint" baseline means; `loadtests.ingest` runs it under uvicorn with the same
WebSocket implementation as the API (`websockets-sansio`).

    uvicorn loadtests.bare_geoadd:app --ws websockets-sansio --port 8900
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis.asyncio as aioredis

KEY = "coop:{bare}:drivers:geo"
POOL_SIZE = int(os.environ.get("BARE_REDIS_POOL", "4096"))
_redis: aioredis.Redis | None = None


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
        await _redis.geoadd(KEY, (data["lng"], data["lat"], member))
        await send(
            {
                "type": "websocket.send",
                "text": json.dumps({"type": "location.ack", "id": data["id"]}),
            }
        )
