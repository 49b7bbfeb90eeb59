"""Which driver positions go into the geo index: numbers the index can hold, inside a service
area, and reachable from the driver's last accepted position at a possible speed."""

from __future__ import annotations

import enum
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from dispatch.core.geo import INDEX_MAX_LAT, distance_m, valid_coordinate
from dispatch.fares.areas import ServiceAreaCache


class Refusal(enum.StrEnum):
    bad_coordinates = "bad_coordinates"
    outside_service_area = "outside_service_area"
    implausible_speed = "implausible_speed"


DETAILS = {
    Refusal.bad_coordinates: (
        f"lat and lng must be finite numbers, lat within ±{INDEX_MAX_LAT} and lng within ±180"
    ),
    Refusal.outside_service_area: "the position is outside the co-op's service area",
    Refusal.implausible_speed: "the position is too far from your last one for the time between",
}


@dataclass(frozen=True)
class _Fix:
    lat: float
    lng: float
    at: float


class PositionGate:
    """Checks each position before it is indexed; counts what it refuses, by reason.

    The speed check compares a position with the driver's last accepted one on this process, at
    the time each arrived: a move longer than `max_speed_mps` times the seconds between, plus
    `jitter_m` (GPS noise, and positions an app queued in a tunnel and sends in one burst), is
    refused, and the last accepted position stays the reference, so an honest driver (slower than
    `max_speed_mps`) is accepted again within seconds.
    """

    def __init__(
        self,
        areas: ServiceAreaCache,
        max_speed_mps: float,
        jitter_m: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.areas = areas
        self.max_speed_mps = max_speed_mps
        self.jitter_m = jitter_m
        self.clock = clock
        self.refused: Counter[Refusal] = Counter()
        self._last: OrderedDict[str, _Fix] = OrderedDict()
        # Past this age a reference allows any move within any area: it is forgotten.
        self._memory_s = 3_600.0

    async def check(self, member: str, lat: object, lng: object) -> tuple[float, float] | Refusal:
        """The position as floats when it may be indexed, else why not."""
        point = valid_coordinate(lat, lng, max_lat=INDEX_MAX_LAT)
        if point is None:
            return self._refuse(Refusal.bad_coordinates)
        if not await self.areas.covers(*point):
            return self._refuse(Refusal.outside_service_area)
        now = self.clock()
        last = self._last.get(member)
        if last is not None:
            allowed_m = self.max_speed_mps * max(0.0, now - last.at) + self.jitter_m
            if distance_m(last.lat, last.lng, *point) > allowed_m:
                return self._refuse(Refusal.implausible_speed)
        self._last[member] = _Fix(point[0], point[1], now)
        self._last.move_to_end(member)
        self._forget_older_than(now - self._memory_s)
        return point

    def _refuse(self, reason: Refusal) -> Refusal:
        self.refused[reason] += 1
        return reason

    def _forget_older_than(self, horizon: float) -> None:
        while self._last:
            member, fix = next(iter(self._last.items()))
            if fix.at >= horizon:
                return
            del self._last[member]
