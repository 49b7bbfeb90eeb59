"""The grouped geo-index writer: callbacks instead of one awaited event per position."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from dispatch.core.redis import RegionKeys, create_redis
from dispatch.dispatcher.presence import LocationIndex, Written, prune_silent


def _keys() -> RegionKeys:
    return RegionKeys(f"index-{uuid.uuid4().hex[:8]}")


async def test_each_position_is_acknowledged_once_its_group_is_written(
    redis: aioredis.Redis,
) -> None:
    keys = _keys()
    index = LocationIndex(redis, keys, 0)
    done: list[tuple[Any, Written]] = []
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
    assert sorted(done) == [(i, Written.indexed) for i in range(len(drivers))]
    assert index.updates_received == len(drivers) + 1
    assert index.updates_indexed >= len(drivers)
    assert await redis.zcard(keys.drivers_geo) == len(drivers)
    assert await redis.zcard(keys.drivers_seen) == len(drivers)
    (lng, lat), *_ = await redis.geopos(keys.drivers_geo, str(drivers[0]))
    assert abs(lat - 40.8) < 1e-4 and abs(lng + 73.95) < 1e-4


async def test_a_failed_write_tells_the_senders_and_keeps_the_positions() -> None:
    unreachable = create_redis("redis://127.0.0.1:1/0")
    index = LocationIndex(unreachable, _keys(), 0)
    done: list[tuple[Any, Written]] = []
    driver = uuid.uuid4()
    index.update(driver, 40.7, -73.9, lambda arg, ok: done.append((arg, ok)), "a")
    try:
        assert await index.flush() is False
    finally:
        await unreachable.aclose()
    assert done == [("a", Written.unavailable)]
    assert index._pending == {str(driver): (40.7, -73.9)}
    assert index.updates_indexed == 0


async def test_a_position_redis_refuses_fails_alone_not_its_group(redis: aioredis.Redis) -> None:
    """GEOADD refuses a whole group for one member beyond +-85.05112878: the group is split until
    the refused member stands alone; the others are indexed and told so."""
    keys = _keys()
    index = LocationIndex(redis, keys, 0)
    done: dict[Any, Written] = {}
    drivers = [uuid.uuid4() for _ in range(40)]
    poison = uuid.uuid4()
    for i, driver in enumerate(drivers[:20]):
        index.update(driver, 40.7 + i * 1e-4, -73.9, lambda arg, w: done.__setitem__(arg, w), i)
    index.update(poison, 85.1, 0.0, lambda arg, w: done.__setitem__(arg, w), "poison")
    for i, driver in enumerate(drivers[20:], start=20):
        index.update(driver, 40.7 + i * 1e-4, -73.9, lambda arg, w: done.__setitem__(arg, w), i)
    assert await index.flush() is True
    assert done.pop("poison") is Written.refused
    assert done == {i: Written.indexed for i in range(len(drivers))}
    assert await redis.zcard(keys.drivers_geo) == len(drivers)
    assert await redis.geopos(keys.drivers_geo, str(poison)) == [None]
    # The refused position is dropped, not retried with (and failing) every later group.
    assert index._pending == {}
    index.update(drivers[0], 40.8, -73.95, lambda arg, w: done.__setitem__(arg, w), "next")
    assert await index.flush() is True
    assert done["next"] is Written.indexed
    assert (index.updates_indexed, index.updates_refused) == (len(drivers) + 1, 1)


async def test_many_drivers_silent_at_once_are_all_pruned(redis: aioredis.Redis) -> None:
    """Lua's unpack fails past about 8,000 values: a prune of 10,000 silent drivers once failed,
    and with it every dispatch cycle of the region, until the silent ones came back."""
    keys = _keys()
    members = [str(uuid.uuid4()) for _ in range(10_000)]
    geo: list[Any] = []
    for i, member in enumerate(members):
        geo += (-73.9, 40.7 + i * 1e-6, member)
    await redis.geoadd(keys.drivers_geo, geo)
    await redis.zadd(keys.drivers_seen, dict.fromkeys(members, 1000.0))
    await redis.zadd(keys.drivers_seen, {"heard-from": 4e9})
    await redis.geoadd(keys.drivers_geo, (-73.9, 40.7, "heard-from"))
    assert await prune_silent(redis, keys, 30) == len(members)
    assert await redis.zrange(keys.drivers_geo, 0, -1) == ["heard-from"]
    assert await redis.zrange(keys.drivers_seen, 0, -1) == ["heard-from"]
