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


def valid_coordinate(lat: object, lng: object) -> tuple[float, float] | None:
    """(lat, lng) when both are finite numbers in range, else None."""
    if isinstance(lat, bool) or isinstance(lng, bool):
        return None
    if not isinstance(lat, int | float) or not isinstance(lng, int | float):
        return None
    lat_f, lng_f = float(lat), float(lng)
    if not (math.isfinite(lat_f) and math.isfinite(lng_f)):
        return None
    if not (-90 <= lat_f <= 90 and -180 <= lng_f <= 180):
        return None
    return lat_f, lng_f
