"""Pickup and trip times on a real road graph, with the straight-line model outside it.

The graph directory holds `points.csv` (`id,lat,lon`), `edges.csv` (`id,source,sink`, directed,
1-based node ids) and `edge_times_{week,sat,sun}.csv` (`id,h0..h23`: seconds to drive the edge in
each hour of the day), as in `shared/data/manhattan_road_graph/`. The hourly times are noisy, so an
edge's time is the median over the chosen hours, never faster than `max_speed_kmh` allows.
Fastest times between all node pairs are computed once, when the model is built (a few seconds for
Manhattan's 4,091 nodes); after that every query is an array lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from dispatch.matching.candidates import PlanarIndex
from dispatch.matching.eta import FloatArray, StraightLineEta, TripEstimate, haversine_m


class RoadGraphEta:
    """Drive from the nearest graph node to the nearest graph node along the fastest path.

    The legs between each point and its nearest node are driven at the straight-line model's speed.
    A pair with either point farther than `max_snap_m` from the graph uses the straight-line model.
    """

    def __init__(
        self,
        graph_dir: Path | str,
        day_type: str = "week",
        hours: Iterable[int] = range(24),
        max_snap_m: float = 300.0,
        max_speed_kmh: float = 50.0,
        fallback: StraightLineEta | None = None,
    ) -> None:
        graph_dir = Path(graph_dir)
        points = np.loadtxt(graph_dir / "points.csv", delimiter=",", skiprows=1, ndmin=2)
        edges = np.loadtxt(
            graph_dir / "edges.csv", delimiter=",", skiprows=1, dtype=np.int64, ndmin=2
        )
        hourly = np.loadtxt(
            graph_dir / f"edge_times_{day_type}.csv", delimiter=",", skiprows=1, ndmin=2
        )
        node_row = {int(node_id): row for row, node_id in enumerate(points[:, 0])}
        self.node_lat = points[:, 1].astype(np.float64)
        self.node_lng = points[:, 2].astype(np.float64)
        self.max_snap_m = max_snap_m
        self.fallback = fallback or StraightLineEta()
        # No path beats the speed cap over the great-circle distance, nor does the fallback model,
        # so plan_batch can bound the ETA of drivers it has not looked at.
        self.min_seconds_per_metre = min(
            3.6 / max_speed_kmh, self.fallback.circuity * 3.6 / self.fallback.speed_kmh
        )

        time_of_edge = dict(
            zip(hourly[:, 0].astype(np.int64).tolist(), range(len(hourly)), strict=True)
        )
        source = np.array([node_row[int(s)] for s in edges[:, 1]])
        sink = np.array([node_row[int(s)] for s in edges[:, 2]])
        length_m = haversine_m(
            self.node_lat[source], self.node_lng[source], self.node_lat[sink], self.node_lng[sink]
        )
        hour_columns = [1 + h for h in hours]
        median_s = np.median(
            hourly[[time_of_edge[int(e)] for e in edges[:, 0]]][:, hour_columns], axis=1
        )
        edge_s = np.maximum(median_s, length_m / (max_speed_kmh / 3.6))

        # Parallel edges would be summed by the sparse matrix; keep the fastest of each.
        n_nodes = len(points)
        order = np.lexsort((edge_s, sink, source))
        pair = source[order] * n_nodes + sink[order]
        first = np.append(True, pair[1:] != pair[:-1])
        source, sink = source[order][first], sink[order][first]
        edge_s = edge_s[order][first]

        graph = csr_matrix((edge_s, (source, sink)), shape=(n_nodes, n_nodes))
        self.node_time_s = dijkstra(graph, directed=True).astype(np.float32)
        self._index = PlanarIndex(self.node_lat, self.node_lng)

    def _snap(self, lat: FloatArray, lng: FloatArray) -> tuple[npt.NDArray[np.int64], FloatArray]:
        node = self._index.nearest(lat, lng)
        snap_m = haversine_m(lat, lng, self.node_lat[node], self.node_lng[node])
        return node, snap_m

    def _road_seconds(
        self, lat1: FloatArray, lng1: FloatArray, lat2: FloatArray, lng2: FloatArray
    ) -> FloatArray:
        lat1, lng1, lat2, lng2 = (
            np.ravel(a).astype(np.float64) for a in np.broadcast_arrays(lat1, lng1, lat2, lng2)
        )
        origin, origin_snap_m = self._snap(lat1, lng1)
        target, target_snap_m = self._snap(lat2, lng2)
        access_m = (origin_snap_m + target_snap_m) * self.fallback.circuity
        seconds = self.node_time_s[origin, target] + access_m / (self.fallback.speed_kmh / 3.6)
        off_graph = (origin_snap_m > self.max_snap_m) | (target_snap_m > self.max_snap_m)
        if off_graph.any():
            seconds[off_graph] = self.fallback.seconds(
                lat1[off_graph], lng1[off_graph], lat2[off_graph], lng2[off_graph]
            )
        return np.asarray(seconds, dtype=np.float64)

    def seconds(
        self, lat1: FloatArray, lng1: FloatArray, lat2: FloatArray, lng2: FloatArray
    ) -> FloatArray:
        shape = np.broadcast_shapes(np.shape(lat1), np.shape(lng1), np.shape(lat2), np.shape(lng2))
        return self._road_seconds(lat1, lng1, lat2, lng2).reshape(shape)

    def estimate(self, lat1: float, lng1: float, lat2: float, lng2: float) -> TripEstimate:
        """Road time; distance is the straight-line model's (the graph's paths are not kept)."""
        seconds = self._road_seconds(
            np.array([lat1]), np.array([lng1]), np.array([lat2]), np.array([lng2])
        )
        distance_m = self.fallback.estimate(lat1, lng1, lat2, lng2).distance_m
        return TripEstimate(distance_m=distance_m, duration_s=round(float(seconds[0])))
