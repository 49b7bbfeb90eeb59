"""Which positions are indexed: the index's range, the service areas (from PostGIS), the speed."""

from __future__ import annotations

import json
import math
from typing import Any

from dispatch.core.database import transaction
from dispatch.dispatcher.plausibility import PositionGate, Refusal
from dispatch.fares import service as fares
from dispatch.fares.areas import ServiceAreaCache, ServiceAreas

TIMES_SQUARE = (40.7580, -73.9855)
PHILADELPHIA = (39.9526, -75.1652)


def square(lng0: float, lat0: float, size: float) -> list[list[float]]:
    return [
        [lng0, lat0],
        [lng0 + size, lat0],
        [lng0 + size, lat0 + size],
        [lng0, lat0 + size],
        [lng0, lat0],
    ]


def test_areas_follow_polygons_holes_and_multipolygons() -> None:
    donut = {"type": "Polygon", "coordinates": [square(0, 0, 10), square(4, 4, 2)]}
    islands = {"type": "MultiPolygon", "coordinates": [[square(20, 20, 1)], [square(30, 20, 1)]]}
    areas = ServiceAreas([json.dumps(donut), json.dumps(islands)])
    assert areas.covers(1, 1) and areas.covers(8, 3)
    assert not areas.covers(5, 5)  # the hole
    assert areas.covers(20.5, 20.5) and areas.covers(20.5, 30.5)
    assert not areas.covers(20.5, 25)  # between the islands, inside their joint bounding box
    assert not areas.covers(-1, 1) and not areas.covers(0, 0.0001 - 1)


def test_areas_with_many_edges_agree_with_the_few_edges_path() -> None:
    """Past FEW_EDGES the test runs in numpy: a 200-gon with a 200-gon hole."""

    def ring(radius: float) -> list[list[float]]:
        points = [
            [radius * math.cos(2 * math.pi * i / 200), radius * math.sin(2 * math.pi * i / 200)]
            for i in range(200)
        ]
        return [*points, points[0]]

    areas = ServiceAreas([json.dumps({"type": "Polygon", "coordinates": [ring(10), ring(3)]})])
    assert areas.covers(0, 5) and areas.covers(-6, -6)
    assert not areas.covers(0, 0) and not areas.covers(1, 2)  # the hole
    assert not areas.covers(0, 10.5) and not areas.covers(7.5, 7.5)  # outside, in the bbox


async def test_the_demo_area_comes_from_postgis(app: Any) -> None:
    async with transaction(app.state) as session:
        areas = await fares.service_areas(session)
    assert areas.covers(*TIMES_SQUARE)
    assert not areas.covers(*PHILADELPHIA)
    assert not areas.covers(0, 0)


async def test_a_miss_reloads_the_areas_at_most_once_per_interval() -> None:
    loads: list[int] = []
    known = [json.dumps({"type": "Polygon", "coordinates": [square(0, 0, 1)]})]

    async def load() -> ServiceAreas:
        loads.append(len(known))
        return ServiceAreas(known)

    cache = ServiceAreaCache(load, reload_after_s=3600)
    await cache.reload()
    assert await cache.covers(0.5, 0.5)
    known.append(json.dumps({"type": "Polygon", "coordinates": [square(10, 10, 1)]}))
    assert not await cache.covers(10.5, 10.5)  # loaded moments ago: no query per miss
    cache.reload_after_s = 0
    assert await cache.covers(10.5, 10.5)  # a region added since: found on the next miss
    assert loads == [1, 2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_gate_refuses_by_reason_and_counts() -> None:
    async def load() -> ServiceAreas:
        return ServiceAreas([json.dumps({"type": "Polygon", "coordinates": [square(-75, 40, 2)]})])

    clock = Clock()
    areas = ServiceAreaCache(load, reload_after_s=3600)
    await areas.reload()
    gate = PositionGate(areas, max_speed_mps=70, jitter_m=100, clock=clock)
    for lat, lng in ((85.1, -74), (float("nan"), -74), (True, -74), ("41", -74), (41, 181)):
        assert await gate.check("d", lat, lng) is Refusal.bad_coordinates
    assert await gate.check("d", 39.5, -74) is Refusal.outside_service_area
    assert await gate.check("d", 41.0, -74.0) == (41.0, -74.0)
    clock.now += 1
    # 1.1 km in a second; then the same place 16 s later is fine (70 m/s × 16 s + 100 m).
    assert await gate.check("d", 41.01, -74.0) is Refusal.implausible_speed
    assert await gate.check("d", 41.0005, -74.0) == (41.0005, -74.0)  # 56 m: within the jitter
    assert await gate.check("other", 41.01, -74.0) == (41.01, -74.0)  # per driver
    clock.now += 16
    assert await gate.check("d", 41.01, -74.0) == (41.01, -74.0)
    assert gate.refused == {
        Refusal.bad_coordinates: 5,
        Refusal.outside_service_area: 1,
        Refusal.implausible_speed: 1,
    }
