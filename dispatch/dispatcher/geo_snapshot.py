"""Read every driver of a Redis GEO key in one round trip.

A GEO key is a sorted set whose scores are 52-bit geohashes. `GEOSEARCH ... WITHHASH` over the
whole earth returns every member with its score as a RESP integer, which Redis writes and hiredis
reads far faster than the doubles of `ZRANGE ... WITHSCORES` or the coordinates of `WITHCOORD`;
the positions are then decoded here with array arithmetic, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from dispatch.matching.eta import FloatArray

# Redis encodes positions on a 26-bit-per-axis grid over these ranges (src/geohash.h).
_GEO_STEP = 26
_LAT_MIN, _LAT_MAX = -85.05112878, 85.05112878
_LNG_MIN, _LNG_MAX = -180.0, 180.0


# Every member of the key: a box centred on (0, 0) as wide and as tall as the equator is long.
WHOLE_EARTH = ("FROMLONLAT", 0, 0, "BYBOX", 40_075, 40_075, "km", "WITHHASH")


def _squash_alternate_bits(interleaved: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Keep bits 0, 2, 4, ... and pack them together (the inverse of a Morton interleave)."""
    x = interleaved & np.uint64(0x5555555555555555)
    for shift, mask in (
        (1, 0x3333333333333333),
        (2, 0x0F0F0F0F0F0F0F0F),
        (4, 0x00FF00FF00FF00FF),
        (8, 0x0000FFFF0000FFFF),
        (16, 0x00000000FFFFFFFF),
    ):
        x = (x | (x >> np.uint64(shift))) & np.uint64(mask)
    return x


def decode_geohash_scores(scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(lat, lng) of each GEO member score, the centre of its cell as `GEOPOS` reports it."""
    bits = np.asarray(scores, dtype=np.float64).astype(np.uint64)
    cells = float(1 << _GEO_STEP)
    lat_cell = _squash_alternate_bits(bits).astype(np.float64)
    lng_cell = _squash_alternate_bits(bits >> np.uint64(1)).astype(np.float64)
    lat = _LAT_MIN + (lat_cell + 0.5) / cells * (_LAT_MAX - _LAT_MIN)
    lng = _LNG_MIN + (lng_cell + 0.5) / cells * (_LNG_MAX - _LNG_MIN)
    return np.clip(lat, _LAT_MIN, _LAT_MAX), np.clip(lng, _LNG_MIN, _LNG_MAX)


def decode_rows(rows: Sequence[Any]) -> tuple[list[str], FloatArray, FloatArray]:
    ids = [m.decode() if isinstance(m, bytes) else m for m, _ in rows]
    lat, lng = decode_geohash_scores(np.fromiter((h for _, h in rows), np.float64, len(rows)))
    return ids, lat, lng


async def read_drivers_async(
    client: aioredis.Redis, key: str
) -> tuple[list[str], FloatArray, FloatArray]:
    """Every member of a GEO key with its position; tens of thousands take milliseconds to
    decode, in a worker thread."""
    rows = await client.execute_command("GEOSEARCH", key, *WHOLE_EARTH)  # type: ignore[no-untyped-call]
    return await asyncio.to_thread(decode_rows, rows)
