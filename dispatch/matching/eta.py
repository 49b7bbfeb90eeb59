"""Travel-time models: how far and how long between two WGS84 points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TripEstimate:
    distance_m: int
    duration_s: int


class EtaModel(Protocol):
    def estimate(self, lat1: float, lng1: float, lat2: float, lng2: float) -> TripEstimate: ...

    def seconds(
        self, lat1: FloatArray, lng1: FloatArray, lat2: FloatArray, lng2: FloatArray
    ) -> FloatArray:
        """Travel seconds for each pair of points (arrays broadcast together)."""
        ...


def haversine_m(
    lat1: FloatArray | float,
    lng1: FloatArray | float,
    lat2: FloatArray | float,
    lng2: FloatArray | float,
) -> FloatArray:
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi = phi2 - phi1
    dlmb = np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(a, 1.0))), dtype=np.float64)


@dataclass(frozen=True)
class StraightLineEta:
    """Great-circle distance times a circuity factor, driven at a constant speed."""

    speed_kmh: float = 25.0
    circuity: float = 1.3

    def estimate(self, lat1: float, lng1: float, lat2: float, lng2: float) -> TripEstimate:
        road_m = float(haversine_m(lat1, lng1, lat2, lng2)) * self.circuity
        return TripEstimate(
            distance_m=round(road_m), duration_s=round(road_m / (self.speed_kmh / 3.6))
        )

    def seconds(
        self, lat1: FloatArray, lng1: FloatArray, lat2: FloatArray, lng2: FloatArray
    ) -> FloatArray:
        return haversine_m(lat1, lng1, lat2, lng2) * (self.circuity / (self.speed_kmh / 3.6))
