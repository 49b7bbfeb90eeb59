"""Candidate (request, driver) pairs from one in-process spatial index per batch.

The drivers of a batch are indexed once in a k-d tree on a local planar projection; each request
then asks the tree for its nearest drivers within the radius its wait allows. No per-request round
trip to Redis, and the work grows with the number of candidate pairs, not with the fleet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from dispatch.matching.eta import EARTH_RADIUS_M, FloatArray

IntArray = npt.NDArray[np.int64]

# The planar projection is exact to well under 1% across a city; the tree is queried this much
# wider and every pair is then checked against the great-circle radius.
_PROJECTION_SLACK = 1.01


def radius_for_wait(
    waited_s: FloatArray, radius_schedule_m: Sequence[tuple[float, float]]
) -> FloatArray:
    """The search radius of each request: the last schedule step whose wait it has reached."""
    schedule = sorted(radius_schedule_m)
    thresholds = np.array([step[0] for step in schedule])
    radii = np.array([step[1] for step in schedule])
    step_index = np.searchsorted(thresholds, waited_s, side="right") - 1
    return np.where(step_index >= 0, radii[np.maximum(step_index, 0)], 0.0)


class PlanarIndex:
    """Nearest-driver queries on an equirectangular projection centred on the fleet."""

    def __init__(self, lat: FloatArray, lng: FloatArray) -> None:
        self._origin_lat_rad = float(np.radians(np.mean(lat))) if len(lat) else 0.0
        # An unbalanced tree builds faster and queries as fast for points spread like a fleet.
        self._tree = cKDTree(self._project(lat, lng), balanced_tree=False) if len(lat) else None
        self.size = len(lat)

    def _project(self, lat: FloatArray, lng: FloatArray) -> FloatArray:
        x = EARTH_RADIUS_M * np.cos(self._origin_lat_rad) * np.radians(lng)
        y = EARTH_RADIUS_M * np.radians(lat)
        return np.column_stack([x, y])

    def nearest(self, lat: FloatArray, lng: FloatArray) -> IntArray:
        """The index of the nearest indexed point to each query point."""
        if self._tree is None:
            raise ValueError("the index is empty")
        _, nearest = self._tree.query(self._project(lat, lng), k=1)
        return np.asarray(nearest, dtype=np.int64)

    def nearest_within(
        self, lat: FloatArray, lng: FloatArray, radius_m: float, k: int
    ) -> tuple[IntArray, IntArray]:
        """Up to k nearest drivers within radius_m of each point, as (point, driver) index pairs.

        Pairs come out grouped by point, nearest first. Radius is checked on the great circle.
        """
        if self._tree is None or len(lat) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        k = min(k, self.size)
        _, neighbours = self._tree.query(
            self._project(lat, lng), k=k, distance_upper_bound=radius_m * _PROJECTION_SLACK
        )
        neighbours = np.asarray(neighbours, dtype=np.int64).reshape(len(lat), k)
        point_of = np.repeat(np.arange(len(lat), dtype=np.int64), k)
        driver_of = neighbours.ravel()
        found = driver_of < self.size
        return point_of[found], driver_of[found]
