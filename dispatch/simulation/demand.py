"""Trip files: real demand to replay, and where the fleet starts.

A trip file is a CSV with a header line, one row per ride request:

- `pickup_datetime` (required): local time, `YYYY-MM-DD HH:MM:SS`.
- Pickup point (required): `pickup_latitude,pickup_longitude` or `lat,lon` (WGS84 degrees).
- Dropoff point (optional): `dropoff_latitude,dropoff_longitude`. Without it, each trip's
  displacement (metres east and north) is drawn, seeded, from a file that has dropoffs.
- `medallion` (optional): the vehicle that served the trip; the fleet can then start where each
  vehicle's first trip of the file starts.

Rows outside the coordinate box (lat 40.4–41.1, lon −74.5…−73.5 for NYC by default) or with a
dropoff out of it are dropped. In files whose times are (90% or more) whole minutes, each request
at :00 is spread uniformly, seeded, over its minute, so a minute's demand does not arrive at once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dispatch.matching.eta import EARTH_RADIUS_M, FloatArray

NYC_BOX = (40.4, 41.1, -74.5, -73.5)  # lat min, lat max, lng min, lng max
_MINUTE_RESOLUTION_SHARE = 0.9
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_PICKUP_COLUMNS = (("pickup_latitude", "pickup_longitude"), ("lat", "lon"))
_DROPOFF_COLUMNS = ("dropoff_latitude", "dropoff_longitude")


@dataclass(frozen=True)
class Demand:
    """Requests of one replay window, sorted by request time (seconds after `window_start`)."""

    window_start: datetime
    window_s: float
    request_s: FloatArray
    pickup_lat: FloatArray
    pickup_lng: FloatArray
    dropoff_lat: FloatArray
    dropoff_lng: FloatArray
    vehicle_start_lat: FloatArray
    vehicle_start_lng: FloatArray

    def __len__(self) -> int:
        return len(self.request_s)


@dataclass(frozen=True)
class _TripRows:
    time: list[datetime]
    pickup_lat: FloatArray
    pickup_lng: FloatArray
    dropoff_lat: FloatArray | None
    dropoff_lng: FloatArray | None
    vehicle: list[str] | None


def _read_rows(path: Path, box: tuple[float, float, float, float]) -> _TripRows:
    with path.open(newline="") as trip_file:
        reader = csv.DictReader(trip_file)
        columns = set(reader.fieldnames or ())
        pickup = next((pair for pair in _PICKUP_COLUMNS if set(pair) <= columns), None)
        if "pickup_datetime" not in columns or pickup is None:
            raise ValueError(
                f"{path}: needs pickup_datetime and pickup_latitude/_longitude or lat/lon columns"
            )
        has_dropoff = set(_DROPOFF_COLUMNS) <= columns
        has_vehicle = "medallion" in columns
        rows = list(reader)

    def column(name: str) -> FloatArray:
        return np.array([float(row[name] or "nan") for row in rows], dtype=np.float64)

    pickup_lat, pickup_lng = column(pickup[0]), column(pickup[1])
    keep = _inside(pickup_lat, pickup_lng, box)
    dropoff_lat = dropoff_lng = None
    if has_dropoff:
        dropoff_lat, dropoff_lng = column(_DROPOFF_COLUMNS[0]), column(_DROPOFF_COLUMNS[1])
        keep &= _inside(dropoff_lat, dropoff_lng, box)
        dropoff_lat, dropoff_lng = dropoff_lat[keep], dropoff_lng[keep]
    kept_rows = [row for row, kept in zip(rows, keep.tolist(), strict=True) if kept]
    return _TripRows(
        time=[datetime.strptime(row["pickup_datetime"], _TIME_FORMAT) for row in kept_rows],
        pickup_lat=pickup_lat[keep],
        pickup_lng=pickup_lng[keep],
        dropoff_lat=dropoff_lat,
        dropoff_lng=dropoff_lng,
        vehicle=[row["medallion"] for row in kept_rows] if has_vehicle else None,
    )


def _inside(
    lat: FloatArray, lng: FloatArray, box: tuple[float, float, float, float]
) -> npt.NDArray[np.bool_]:
    return np.asarray(
        (lat >= box[0]) & (lat <= box[1]) & (lng >= box[2]) & (lng <= box[3]), dtype=np.bool_
    )


@dataclass(frozen=True)
class TripShapes:
    """Pickup-to-dropoff displacements (metres east, metres north) to draw trips from."""

    east_m: FloatArray
    north_m: FloatArray

    @classmethod
    def from_trip_file(
        cls, path: Path | str, box: tuple[float, float, float, float] = NYC_BOX
    ) -> TripShapes:
        rows = _read_rows(Path(path), box)
        if rows.dropoff_lat is None or rows.dropoff_lng is None:
            raise ValueError(f"{path} has no dropoff columns to draw trip shapes from")
        east, north = _offset_m(
            rows.pickup_lat, rows.pickup_lng, rows.dropoff_lat, rows.dropoff_lng
        )
        return cls(east, north)


def _offset_m(
    lat1: FloatArray, lng1: FloatArray, lat2: FloatArray, lng2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    east = np.radians(lng2 - lng1) * EARTH_RADIUS_M * np.cos(np.radians(lat1))
    north = np.radians(lat2 - lat1) * EARTH_RADIUS_M
    return east, north


def load_demand(
    path: Path | str,
    window_start: datetime,
    window_end: datetime,
    seed: int,
    trip_shapes: TripShapes | None = None,
    box: tuple[float, float, float, float] = NYC_BOX,
) -> Demand:
    """Requests with `window_start <= pickup_datetime < window_end` (after minute spreading)."""
    rows = _read_rows(Path(path), box)
    rng = np.random.default_rng(seed)
    offset_s = np.array([(t - window_start).total_seconds() for t in rows.time], dtype=np.float64)
    on_the_minute = np.array([t.second == 0 for t in rows.time], dtype=np.bool_)
    if len(offset_s) and on_the_minute.mean() >= _MINUTE_RESOLUTION_SHARE:
        offset_s = offset_s + np.where(on_the_minute, rng.uniform(0.0, 60.0, len(offset_s)), 0.0)

    vehicle_start_lat = vehicle_start_lng = np.zeros(0)
    if rows.vehicle is not None:
        first_trip: dict[str, int] = {}
        for row_index in np.argsort(offset_s, kind="stable").tolist():
            first_trip.setdefault(rows.vehicle[row_index], row_index)
        starts = np.array(sorted(first_trip.values()), dtype=np.int64)
        vehicle_start_lat, vehicle_start_lng = rows.pickup_lat[starts], rows.pickup_lng[starts]

    window_s = (window_end - window_start).total_seconds()
    in_window = np.flatnonzero((offset_s >= 0) & (offset_s < window_s))
    in_window = in_window[np.argsort(offset_s[in_window], kind="stable")]
    pickup_lat, pickup_lng = rows.pickup_lat[in_window], rows.pickup_lng[in_window]
    if rows.dropoff_lat is not None and rows.dropoff_lng is not None:
        dropoff_lat, dropoff_lng = rows.dropoff_lat[in_window], rows.dropoff_lng[in_window]
    elif trip_shapes is not None:
        dropoff_lat, dropoff_lng = _draw_dropoffs(pickup_lat, pickup_lng, trip_shapes, rng, box)
    else:
        raise ValueError(f"{path} has no dropoffs; pass trip_shapes to draw them")

    return Demand(
        window_start=window_start,
        window_s=window_s,
        request_s=offset_s[in_window],
        pickup_lat=pickup_lat,
        pickup_lng=pickup_lng,
        dropoff_lat=dropoff_lat,
        dropoff_lng=dropoff_lng,
        vehicle_start_lat=vehicle_start_lat,
        vehicle_start_lng=vehicle_start_lng,
    )


def _draw_dropoffs(
    pickup_lat: FloatArray,
    pickup_lng: FloatArray,
    shapes: TripShapes,
    rng: np.random.Generator,
    box: tuple[float, float, float, float],
) -> tuple[FloatArray, FloatArray]:
    dropoff_lat = np.empty_like(pickup_lat)
    dropoff_lng = np.empty_like(pickup_lng)
    pending = np.arange(len(pickup_lat))
    # Redraw the few trips that would end outside the box (into the water or out of the city).
    for _ in range(20):
        if len(pending) == 0:
            break
        drawn = rng.integers(0, len(shapes.east_m), len(pending))
        lat = pickup_lat[pending] + np.degrees(shapes.north_m[drawn] / EARTH_RADIUS_M)
        lng = pickup_lng[pending] + np.degrees(
            shapes.east_m[drawn] / (EARTH_RADIUS_M * np.cos(np.radians(pickup_lat[pending])))
        )
        dropoff_lat[pending], dropoff_lng[pending] = lat, lng
        pending = pending[~_inside(lat, lng, box)]
    dropoff_lat[pending], dropoff_lng[pending] = pickup_lat[pending], pickup_lng[pending]
    return dropoff_lat, dropoff_lng


def fleet_start(
    demand: Demand, fleet_size: int, seed: int, from_vehicles: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Where each driver starts: a distinct vehicle's first pickup when the file names vehicles
    (and `from_vehicles`), topped up with random pickup points of the demand."""
    rng = np.random.default_rng([seed, 1])
    lat: list[FloatArray] = []
    lng: list[FloatArray] = []
    if from_vehicles and len(demand.vehicle_start_lat):
        chosen = rng.permutation(len(demand.vehicle_start_lat))[:fleet_size]
        lat.append(demand.vehicle_start_lat[chosen])
        lng.append(demand.vehicle_start_lng[chosen])
    missing = fleet_size - sum(len(part) for part in lat)
    if missing > 0:
        drawn = rng.integers(0, len(demand), missing)
        lat.append(demand.pickup_lat[drawn])
        lng.append(demand.pickup_lng[drawn])
    return np.concatenate(lat), np.concatenate(lng)
