"""The grouped geo-index writer: callbacks instead of one awaited event per position."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from dispatch.core.redis import RegionKeys, create_redis
from dispatch.dispatcher.presence import LocationIndex


def _keys() -> RegionKeys:
    return RegionKeys(f"index-{uuid.uuid4().hex[:8]}")


async def test_each_position_is_acknowledged_once_its_group_is_written(
    redis: aioredis.Redis,
) -> None:
    keys = _keys()
    index = LocationIndex(redis, keys, 0)
    done: list[tuple[Any, bool]] = []
    drivers = [uuid.uuid4() for _ in range(50)]
    await index.start()
    try:
        for i, driver in enumerate(drivers):
            index.update(driver, 40.7 + i * 1e-4, -73.9, lambda arg, ok: done.append((arg, ok)), i)
        index.update(drivers[0], 40.8, -73.95)  # no callback; the newest position wins
        for _ in range(100):
            if len(done) == len(drivers):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    finally:
        await index.stop()
    assert sorted(done) == [(i, True) for i in range(len(drivers))]
    assert index.updates_received == len(drivers) + 1
    assert index.updates_indexed >= len(drivers)
    assert await redis.zcard(keys.drivers_geo) == len(drivers)
    assert await redis.zcard(keys.drivers_seen) == len(drivers)
    (lng, lat), *_ = await redis.geopos(keys.drivers_geo, str(drivers[0]))
    assert abs(lat - 40.8) < 1e-4 and abs(lng + 73.95) < 1e-4


async def test_a_failed_write_tells_the_senders_and_keeps_the_positions() -> None:
    unreachable = create_redis("redis://127.0.0.1:1/0")
    index = LocationIndex(unreachable, _keys(), 0)
    done: list[tuple[Any, bool]] = []
    driver = uuid.uuid4()
    index.update(driver, 40.7, -73.9, lambda arg, ok: done.append((arg, ok)), "a")
    try:
        assert await index.flush() is False
    finally:
        await unreachable.aclose()
    assert done == [("a", False)]
    assert index._pending == {str(driver): (40.7, -73.9)}
    assert index.updates_indexed == 0
