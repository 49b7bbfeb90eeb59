"""Online drivers' positions in the region's Redis GEO index, written in groups."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hiredis import pack_command
from redis.exceptions import ResponseError

from dispatch.core.redis import Redis, RegionKeys, send_packed
from dispatch.dispatcher.geo_snapshot import read_drivers_async

log = logging.getLogger(__name__)

# Drops every driver silent since ARGV[1]; both keys share the region's hash tag. In chunks:
# Lua's `unpack` fails past about 8,000 values, and one failed prune failed the dispatch cycle,
# every cycle, once that many drivers had gone silent together.
PRUNE_SILENT = """
local silent = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for first = 1, #silent, 1000 do
  local last = math.min(first + 999, #silent)
  redis.call('ZREM', KEYS[1], unpack(silent, first, last))
  redis.call('ZREM', KEYS[2], unpack(silent, first, last))
end
return #silent
"""


@dataclass(frozen=True)
class DriverPositions:
    driver_ids: list[str]
    lat: np.ndarray
    lng: np.ndarray


class Written(enum.Enum):
    indexed = "indexed"
    unavailable = "unavailable"  # Redis failed: the position stays pending and is tried again
    refused = "refused"  # Redis refused this position itself: it is dropped


# Called once a queued position is written, or not, with what became of it.
Indexed = Callable[[Any, Written], None]

# After a failed write, wait this long before trying again with what is pending.
RETRY_AFTER_FAILURE_S = 0.5


def _refuses_position(error: ResponseError) -> bool:
    """GEOADD's reply when one member's coordinates are out of the index's range."""
    return "invalid longitude,latitude" in str(error)


class LocationIndex:
    """Groups position updates into one multi-member GEOADD (plus the ZADD of `seen`) per write.

    A write starts as soon as the event loop is free after the first pending position (plus
    `flush_interval_s`, if set, to gather more), and the positions that arrive while it is in
    flight go out together in the next one: the group grows with the load, up to one write per
    Redis round trip. Each update may carry a callback, called once the write holding it is done,
    so that many acknowledgements cost no task each.

    GEOADD is all or nothing: one member that Redis refuses fails the whole group. The group is
    then split in halves until the refused members stand alone, so one bad position costs its
    sender alone (and the others a few more round trips), never the group.
    """

    def __init__(self, redis: Redis, keys: RegionKeys, flush_interval_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.flush_interval_s = flush_interval_s
        self._pending: dict[str, tuple[float, float]] = {}
        self._waiting: dict[str, list[tuple[Indexed, Any]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.updates_received = 0
        self.updates_indexed = 0
        self.updates_refused = 0

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
        """Queue a position; `on_indexed(argument, written)` is called once its write is done."""
        member = str(driver_id)
        self._pending[member] = (lat, lng)
        self.updates_received += 1
        if on_indexed is not None:
            self._waiting.setdefault(member, []).append((on_indexed, argument))
        if not self._wake.is_set():
            self._wake.set()

    async def flush(self) -> bool:
        """Write what is pending; False if Redis failed (those positions stay pending)."""
        pending, self._pending = self._pending, {}
        waiting, self._waiting = self._waiting, {}
        outcome = await self._write(pending)
        failed = False
        for member, written in outcome.items():
            if written is Written.unavailable:
                failed = True
                # Newer positions that arrived during the attempt win.
                self._pending.setdefault(member, pending[member])
            _notify(waiting.pop(member, ()), written)
        # Waiters whose member left the index meanwhile (`remove`): nothing is left to write.
        for callbacks in waiting.values():
            _notify(callbacks, Written.indexed)
        return not failed

    async def _write(self, pending: dict[str, tuple[float, float]]) -> dict[str, Written]:
        outcome: dict[str, Written] = {}
        parts = [list(pending)] if pending else []
        now = time.time()
        while parts:
            part = parts.pop()
            try:
                await send_packed(self.redis, self._pack(part, pending, now), replies=2)
            except ResponseError as error:
                if not _refuses_position(error):
                    log.warning("the geo index refused a write: %s", error)
                    parts.append(part)
                    break
                if len(part) == 1:
                    outcome[part[0]] = Written.refused
                    self.updates_refused += 1
                    log.warning("the geo index refused one driver position")
                    continue
                middle = len(part) // 2
                parts += (part[middle:], part[:middle])
                continue
            except Exception:
                log.warning(
                    "could not index %d driver positions",
                    sum(map(len, parts)) + len(part),
                    exc_info=True,
                )
                parts.append(part)
                break
            for member in part:
                outcome[member] = Written.indexed
            self.updates_indexed += len(part)
        for part in parts:  # what Redis failed to take
            for member in part:
                outcome[member] = Written.unavailable
        return outcome

    def _pack(
        self, members: list[str], positions: dict[str, tuple[float, float]], now: float
    ) -> bytes:
        geo: list[float | str] = ["GEOADD", self.keys.drivers_geo]
        seen: list[float | str] = ["ZADD", self.keys.drivers_seen]
        for member in members:
            lat, lng = positions[member]
            geo += (lng, lat, member)
            seen += (now, member)
        # (hiredis's stub types the argument as a 1-tuple.)
        packed: bytes = pack_command(tuple(geo)) + pack_command(tuple(seen))  # type: ignore[arg-type]
        return packed

    async def remove(self, driver_id: uuid.UUID) -> None:
        member = str(driver_id)
        self._pending.pop(member, None)
        await forget(self.redis, self.keys, [member])

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            if self.flush_interval_s > 0:
                await asyncio.sleep(self.flush_interval_s)
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)
                self._wake.set()


def _notify(waiting: Iterable[tuple[Indexed, Any]], written: Written) -> None:
    for on_indexed, argument in waiting:
        try:
            on_indexed(argument, written)
        except Exception:
            log.exception("a position callback failed")


async def prune_silent(redis: Redis, keys: RegionKeys, silence_s: float) -> int:
    removed = await redis.eval(
        PRUNE_SILENT, 2, keys.drivers_geo, keys.drivers_seen, time.time() - silence_s
    )
    return int(removed)


async def forget(redis: Redis, keys: RegionKeys, driver_ids: Collection[str]) -> None:
    """Drivers out of the region's index (and its last-seen set), in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.drivers_geo, *driver_ids)
        pipe.zrem(keys.drivers_seen, *driver_ids)
        await pipe.execute()


async def snapshot(redis: Redis, keys: RegionKeys) -> DriverPositions:
    """Every indexed driver with its position, in one round trip."""
    ids, lat, lng = await read_drivers_async(redis, keys.drivers_geo)
    return DriverPositions(driver_ids=ids, lat=lat, lng=lng)


async def position_of(
    redis: Redis, keys: RegionKeys, driver_id: uuid.UUID
) -> tuple[float, float] | None:
    """The driver's indexed (lat, lng), or None if the driver is not in the index."""
    (found,) = await redis.geopos(keys.drivers_geo, str(driver_id))
    if found is None:
        return None
    lng, lat = found
    return float(lat), float(lng)
