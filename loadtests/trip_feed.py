"""Ride requests drawn from a real trip file, paced to a target arrival rate.

The trip file is a CSV in the NYC TLC trip-record layout (a header line; `pickup_datetime`,
`pickup_latitude`, `pickup_longitude`, `dropoff_latitude`, `dropoff_longitude`; other columns are
ignored); see `dispatch/simulation/demand.py` for every accepted layout. Trips whose pickup or
dropoff lies outside the service area are dropped. The trace's own arrival times are kept and
sped up (`--demand-scale`) or rescaled to a target rate (`--rides-per-second`); at the end of the
window the trace starts over. The default window (minutes 10 to 35 of the file) is the steady
part of the bundled New Year's Eve trace: its first minutes ramp up and its last are under-counted.
"""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from dispatch.simulation.datasets import DATA_DIR, TAXI_FILE
from dispatch.simulation.demand import load_demand

DEFAULT_TRIPS = DATA_DIR / TAXI_FILE
# The service area of the demo co-op (pickups outside it are refused by the API).
SERVICE_BOX = (40.48, 40.92, -74.26, -73.70)
# A trip due this long ago with no rider free to take it is counted as dropped demand.
LATE_DROP_S = 5.0


@dataclass(frozen=True)
class Trip:
    index: int
    pickup: tuple[float, float]
    dropoff: tuple[float, float]


def _first_pickup(path: Path) -> datetime:
    with path.open(newline="") as trips:
        times = (
            row["pickup_datetime"] for row in csv.DictReader(trips) if row.get("pickup_datetime")
        )
        first = min(times)
    return datetime.strptime(first, "%Y-%m-%d %H:%M:%S").replace(second=0)


class DemandFeed:
    """Hands the next trip to whichever rider asks, at the trip's (scaled) arrival time."""

    def __init__(
        self,
        path: Path,
        skip_minutes: float = 10.0,
        window_minutes: float = 25.0,
        demand_scale: float = 1.0,
        rides_per_second: float = 0.0,
        seed: int = 7,
    ) -> None:
        start = _first_pickup(path) + timedelta(minutes=skip_minutes)
        demand = load_demand(
            path, start, start + timedelta(minutes=window_minutes), seed=seed, box=SERVICE_BOX
        )
        if len(demand) == 0:
            raise ValueError(f"{path}: no trips inside the service area in the first window")
        self.trips = [
            Trip(
                i,
                (float(demand.pickup_lat[i]), float(demand.pickup_lng[i])),
                (float(demand.dropoff_lat[i]), float(demand.dropoff_lng[i])),
            )
            for i in range(len(demand))
        ]
        self.offsets = [float(s) for s in demand.request_s]
        self.span_s = demand.window_s
        self.trace_rate = len(self.trips) / self.span_s
        speedup = rides_per_second / self.trace_rate if rides_per_second > 0 else demand_scale
        self.speedup = max(speedup, 1e-6)
        self.target_rate = self.trace_rate * self.speedup
        self.started: float | None = None
        self.issued = 0
        self.dropped = 0
        self._next = 0
        self._random = random.Random(seed)

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def _due(self, n: int) -> float:
        assert self.started is not None
        loop, index = divmod(n, len(self.trips))
        return self.started + (loop * self.span_s + self.offsets[index]) / self.speedup

    def take(self) -> tuple[Trip, float]:
        """The next trip nobody has taken and the monotonic time it is due (maybe in the past)."""
        self.start()
        now = time.monotonic()
        while self._due(self._next) < now - LATE_DROP_S:
            self.dropped += 1
            self._next += 1
        n = self._next
        self._next += 1
        self.issued += 1
        return self.trips[n % len(self.trips)], self._due(n)

    def random_point(self) -> tuple[float, float]:
        """A pickup point of the trace: where drivers start and cruise."""
        return self._random.choice(self.trips).pickup


def step_towards(
    origin: tuple[float, float], target: tuple[float, float], metres: float
) -> tuple[float, float]:
    """The point `metres` from origin along the straight line to target (or target itself)."""
    lat1, lng1 = origin
    lat2, lng2 = target
    north = (lat2 - lat1) * 111_320.0
    east = (lng2 - lng1) * 111_320.0 * math.cos(math.radians(lat1))
    distance = math.hypot(north, east)
    if distance <= metres or distance == 0:
        return target
    share = metres / distance
    return lat1 + (lat2 - lat1) * share, lng1 + (lng2 - lng1) * share


def between(
    origin: tuple[float, float], target: tuple[float, float], share: float
) -> tuple[float, float]:
    share = min(max(share, 0.0), 1.0)
    return origin[0] + (target[0] - origin[0]) * share, origin[1] + (target[1] - origin[1]) * share
