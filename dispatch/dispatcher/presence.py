"""Online drivers' positions in the region's Redis GEO index, written in groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np

from dispatch.core.redis import Redis, RegionKeys
from dispatch.matching.geo_snapshot import read_drivers_async

log = logging.getLogger(__name__)

# Drops every driver silent since ARGV[1]; both keys share the region's hash tag.
PRUNE_SILENT = """
local silent = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if #silent > 0 then
  redis.call('ZREM', KEYS[1], unpack(silent))
  redis.call('ZREM', KEYS[2], unpack(silent))
end
return #silent
"""


@dataclass(frozen=True)
class DriverPositions:
    driver_ids: list[str]
    lat: np.ndarray
    lng: np.ndarray


class LocationIndex:
    """Batches position updates into one multi-member GEOADD per flush."""

    def __init__(self, redis: Redis, keys: RegionKeys, flush_interval_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.flush_interval_s = flush_interval_s
        self._pending: dict[str, tuple[float, float]] = {}
        self._flushed: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.updates_indexed = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    def update(self, driver_id: uuid.UUID, lat: float, lng: float) -> asyncio.Event:
        """Queue a position; the returned event is set once it is in the index."""
        self._pending[str(driver_id)] = (lat, lng)
        return self._flushed

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        flushed, self._flushed = self._flushed, asyncio.Event()
        geo: list[float | str] = []
        for member, (lat, lng) in pending.items():
            geo.extend((lng, lat, member))
        now = time.time()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.geoadd(self.keys.drivers_geo, geo)
                pipe.zadd(self.keys.drivers_seen, dict.fromkeys(pending, now))
                await pipe.execute()
            self.updates_indexed += len(pending)
        except Exception:
            log.warning("could not index %d driver positions", len(pending), exc_info=True)
            for member, position in pending.items():
                self._pending.setdefault(member, position)
            return
        flushed.set()

    async def remove(self, driver_id: uuid.UUID) -> None:
        member = str(driver_id)
        self._pending.pop(member, None)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.drivers_geo, member)
            pipe.zrem(self.keys.drivers_seen, member)
            await pipe.execute()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()


async def prune_silent(redis: Redis, keys: RegionKeys, silence_s: float) -> int:
    removed = await redis.eval(
        PRUNE_SILENT, 2, keys.drivers_geo, keys.drivers_seen, time.time() - silence_s
    )
    return int(removed)


async def snapshot(redis: Redis, keys: RegionKeys) -> DriverPositions:
    """Every indexed driver with its position, in one round trip."""
    ids, lat, lng = await read_drivers_async(redis, keys.drivers_geo)
    return DriverPositions(driver_ids=ids, lat=lat, lng=lng)
