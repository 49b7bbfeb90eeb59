"""The regions' service areas, held in process: every driver position is checked against them,
thousands of times a second, where a PostGIS query each would cost a round trip."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
FEW_EDGES = 64


@dataclass(frozen=True)
class _Area:
    """One region's multipolygon as its edges (every ring's, holes too) and its bounding box."""

    x0: FloatArray
    y0: FloatArray
    x1: FloatArray
    y1: FloatArray
    bbox: tuple[float, float, float, float]  # min lng, min lat, max lng, max lat
    # A few edges are cheaper in plain Python than numpy's per-call overhead (a square: 1 µs
    # instead of 10).
    few: tuple[tuple[float, float, float, float], ...] | None

    def covers(self, lat: float, lng: float) -> bool:
        min_x, min_y, max_x, max_y = self.bbox
        if not (min_x <= lng <= max_x and min_y <= lat <= max_y):
            return False
        # Even-odd rule over every ring's edges: a point inside a hole crosses its edges too.
        if self.few is not None:
            inside = False
            for x0, y0, x1, y1 in self.few:
                if (y0 > lat) != (y1 > lat) and lng < x0 + (lat - y0) * (x1 - x0) / (y1 - y0):
                    inside = not inside
            return inside
        straddles = (self.y0 > lat) != (self.y1 > lat)
        if not straddles.any():
            return False
        x0, y0 = self.x0[straddles], self.y0[straddles]
        x1, y1 = self.x1[straddles], self.y1[straddles]
        crossing_x = x0 + (lat - y0) * (x1 - x0) / (y1 - y0)
        return bool(np.count_nonzero(lng < crossing_x) % 2)


def _area_of(multipolygon: list[list[list[list[float]]]]) -> _Area | None:
    starts: list[FloatArray] = []
    ends: list[FloatArray] = []
    for polygon in multipolygon:
        for ring in polygon:
            points = np.asarray(ring, dtype=np.float64)
            if len(points) >= 4:
                starts.append(points[:-1])
                ends.append(points[1:])
    if not starts:
        return None
    start, end = np.concatenate(starts), np.concatenate(ends)
    every = np.concatenate((start, end))
    lo, hi = every.min(axis=0), every.max(axis=0)
    return _Area(
        x0=start[:, 0],
        y0=start[:, 1],
        x1=end[:, 0],
        y1=end[:, 1],
        bbox=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
        few=(
            tuple(
                (float(a[0]), float(a[1]), float(b[0]), float(b[1]))
                for a, b in zip(start, end, strict=True)
            )
            if len(start) <= FEW_EDGES
            else None
        ),
    )


class ServiceAreas:
    """Point-in-area for the regions' MULTIPOLYGONs (from `ST_AsGeoJSON`)."""

    def __init__(self, geojson: Iterable[str]) -> None:
        areas = []
        for text in geojson:
            shape = json.loads(text)
            polygons = shape["coordinates"]
            if shape["type"] == "Polygon":
                polygons = [polygons]
            area = _area_of(polygons)
            if area is not None:
                areas.append(area)
        self._areas = areas

    def __len__(self) -> int:
        return len(self._areas)

    def covers(self, lat: float, lng: float) -> bool:
        return any(area.covers(lat, lng) for area in self._areas)


Loader = Callable[[], Awaitable[ServiceAreas]]


class ServiceAreaCache:
    """The areas loaded once at startup, and again at most every `reload_after_s` when a position
    falls outside them all: a region added after the process started is served within that time,
    and positions from far away cost at most one query per interval, not one each."""

    def __init__(self, load: Loader, reload_after_s: float) -> None:
        self._load = load
        self.reload_after_s = reload_after_s
        self.areas = ServiceAreas(())
        self._loaded_at = -float("inf")
        self._loading: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        if self._loading is None:
            self._loading = asyncio.create_task(self._reload())
        loading = self._loading
        try:
            await asyncio.shield(loading)
        finally:
            if loading.done() and self._loading is loading:
                self._loading = None

    async def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        try:
            self.areas = await self._load()
        except Exception:
            # The areas we hold stay in force; the next miss after the interval tries again.
            log.warning("could not load the service areas", exc_info=True)

    async def covers(self, lat: float, lng: float) -> bool:
        if self.areas.covers(lat, lng):
            return True
        if time.monotonic() - self._loaded_at < self.reload_after_s:
            return False
        await self.reload()
        return self.areas.covers(lat, lng)
