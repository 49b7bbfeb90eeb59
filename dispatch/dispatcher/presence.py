"""Online drivers' positions in the region's Redis GEO index, written in groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hiredis import pack_command

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


# Called once a queued position is in the index (True) or could not be written (False).
Indexed = Callable[[Any, bool], None]

# After a failed write, wait this long before trying again with what is pending.
RETRY_AFTER_FAILURE_S = 0.5


class LocationIndex:
    """Groups position updates into one multi-member GEOADD (plus the ZADD of `seen`) per write.

    A write starts as soon as the event loop is free after the first pending position (plus
    `flush_interval_s`, if set, to gather more), and the positions that arrive while it is in
    flight go out together in the next one: the group grows with the load, up to one write per
    Redis round trip. Each update may carry a callback, called once the write holding it is done,
    so that many acknowledgements cost no task each.
    """

    def __init__(self, redis: Redis, keys: RegionKeys, flush_interval_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.flush_interval_s = flush_interval_s
        self._pending: dict[str, tuple[float, float]] = {}
        self._waiting: list[tuple[Indexed, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.updates_received = 0
        self.updates_indexed = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    def update(
        self,
        driver_id: uuid.UUID | str,
        lat: float,
        lng: float,
        on_indexed: Indexed | None = None,
        argument: Any = None,
    ) -> None:
        """Queue a position; `on_indexed(argument, ok)` is called once it is written, or not."""
        self._pending[str(driver_id)] = (lat, lng)
        self.updates_received += 1
        if on_indexed is not None:
            self._waiting.append((on_indexed, argument))
        if not self._wake.is_set():
            self._wake.set()

    async def flush(self) -> bool:
        """Write what is pending; False if Redis failed (the positions stay pending)."""
        waiting, self._waiting = self._waiting, []
        if not self._pending:
            _notify(waiting, True)
            return True
        pending, self._pending = self._pending, {}
        geo: list[float | str] = ["GEOADD", self.keys.drivers_geo]
        seen: list[float | str] = ["ZADD", self.keys.drivers_seen]
        now = time.time()
        for member, (lat, lng) in pending.items():
            geo += (lng, lat, member)
            seen += (now, member)
        try:
            # (hiredis's stub types the argument as a 1-tuple.)
            packed = pack_command(tuple(geo)) + pack_command(tuple(seen))  # type: ignore[arg-type]
            await self._send(packed, replies=2)
        except Exception:
            log.warning("could not index %d driver positions", len(pending), exc_info=True)
            # Newer positions that arrived during the attempt win; the senders are told.
            for member, position in pending.items():
                self._pending.setdefault(member, position)
            _notify(waiting, False)
            return False
        self.updates_indexed += len(pending)
        _notify(waiting, True)
        return True

    async def _send(self, packed: bytes, replies: int) -> None:
        """Write pre-packed commands on one pooled connection and read their replies.

        hiredis packs the whole group in C: redis-py's own packer, in Python, cost about as much
        CPU as everything else done per position.
        """
        pool = self.redis.connection_pool
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

    async def remove(self, driver_id: uuid.UUID) -> None:
        member = str(driver_id)
        self._pending.pop(member, None)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.drivers_geo, member)
            pipe.zrem(self.keys.drivers_seen, member)
            await pipe.execute()

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            if self.flush_interval_s > 0:
                await asyncio.sleep(self.flush_interval_s)
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)
                self._wake.set()


def _notify(waiting: list[tuple[Indexed, Any]], ok: bool) -> None:
    for on_indexed, argument in waiting:
        try:
            on_indexed(argument, ok)
        except Exception:
            log.exception("a position callback failed")


async def prune_silent(redis: Redis, keys: RegionKeys, silence_s: float) -> int:
    removed = await redis.eval(
        PRUNE_SILENT, 2, keys.drivers_geo, keys.drivers_seen, time.time() - silence_s
    )
    return int(removed)


async def snapshot(redis: Redis, keys: RegionKeys) -> DriverPositions:
    """Every indexed driver with its position, in one round trip."""
    ids, lat, lng = await read_drivers_async(redis, keys.drivers_geo)
    return DriverPositions(driver_ids=ids, lat=lat, lng=lng)
