"""WGS84 points as API values: finite, in range, lat/lng."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LatLng(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)

    @field_validator("lat", "lng", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be finite")
        return value


# Redis GEO (Web Mercator) takes latitudes up to here and refuses the whole GEOADD beyond.
INDEX_MAX_LAT = 85.05112878
EARTH_RADIUS_M = 6_371_008.8


def valid_coordinate(lat: object, lng: object, max_lat: float = 90.0) -> tuple[float, float] | None:
    """(lat, lng) when both are finite numbers in range (|lat| <= `max_lat`), else None."""
    if isinstance(lat, bool) or isinstance(lng, bool):
        return None
    if not isinstance(lat, int | float) or not isinstance(lng, int | float):
        return None
    lat_f, lng_f = float(lat), float(lng)
    if not (math.isfinite(lat_f) and math.isfinite(lng_f)):
        return None
    if not (-max_lat <= lat_f <= max_lat and -180 <= lng_f <= 180):
        return None
    return lat_f, lng_f


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle metres between two points: the scalar twin of the engine's vectorised
    `dispatch.matching.eta.haversine_m` (one position at a time, where numpy's per-call cost
    would dominate; the engine imports nothing of ours, so each keeps the radius)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(a, 1.0)))
