"""Road-graph ETAs on the real Manhattan graph."""

import numpy as np
import pytest

from dispatch.matching import StraightLineEta
from dispatch.matching.road_graph import RoadGraphEta
from dispatch.simulation.datasets import DATA_DIR, ROAD_GRAPH_DIR

GRAPH = DATA_DIR / ROAD_GRAPH_DIR
TIMES_SQUARE = (40.7580, -73.9855)
WALL_STREET = (40.7060, -74.0088)
JFK = (40.6413, -73.7781)


@pytest.fixture(scope="module")
def road():
    return RoadGraphEta(GRAPH)


def test_crosstown_trip_takes_city_driving_time(road):
    trip = road.estimate(*TIMES_SQUARE, *WALL_STREET)
    # About 6 km as the crow flies: between 10 and 45 minutes in Manhattan traffic.
    assert 600 < trip.duration_s < 2700
    assert (
        trip.duration_s
        > StraightLineEta(speed_kmh=50).estimate(*TIMES_SQUARE, *WALL_STREET).duration_s
    )


def test_same_point_is_nearly_free_and_one_way_streets_make_it_asymmetric(road):
    assert road.estimate(*TIMES_SQUARE, *TIMES_SQUARE).duration_s < 30
    there = road.estimate(*TIMES_SQUARE, *WALL_STREET).duration_s
    back = road.estimate(*WALL_STREET, *TIMES_SQUARE).duration_s
    assert there != back


def test_falls_back_to_straight_line_off_the_graph(road):
    assert road.estimate(*JFK, *TIMES_SQUARE) == StraightLineEta().estimate(*JFK, *TIMES_SQUARE)


def test_seconds_is_vectorised_and_agrees_with_estimate(road):
    lat = np.array([[TIMES_SQUARE[0]], [WALL_STREET[0]]])
    lng = np.array([[TIMES_SQUARE[1]], [WALL_STREET[1]]])
    seconds = road.seconds(lat, lng, lat.T, lng.T)
    assert seconds.shape == (2, 2)
    assert seconds[0, 1] == pytest.approx(
        road.estimate(*TIMES_SQUARE, *WALL_STREET).duration_s, abs=1
    )


def test_plan_batch_on_road_etas_matches_the_dense_optimum(road):
    # Road ETAs do not grow with straight-line distance, so candidate lists must widen until the
    # model's fastest pace proves no left-off driver could do better.
    from scipy.optimize import linear_sum_assignment

    from dispatch.matching import DriverSnapshot, MatchingSettings, RequestBatch, plan_batch

    rng = np.random.default_rng(5)
    req_lat, req_lng = 40.75 + rng.normal(0, 0.006, 80), -73.985 + rng.normal(0, 0.004, 80)
    drv_lat, drv_lng = 40.75 + rng.normal(0, 0.01, 200), -73.985 + rng.normal(0, 0.008, 200)
    requests = RequestBatch(
        [f"r{i}" for i in range(80)], req_lat, req_lng, np.zeros(80), [frozenset()] * 80
    )
    drivers = DriverSnapshot(
        [f"d{i}" for i in range(200)], drv_lat, drv_lng, np.zeros(200), np.zeros(200)
    )
    plan = plan_batch(requests, drivers, road, MatchingSettings())

    from dispatch.matching.eta import haversine_m

    distance = haversine_m(req_lat[:, None], req_lng[:, None], drv_lat[None, :], drv_lng[None, :])
    seconds = np.rint(
        road.seconds(drv_lat[None, :], drv_lng[None, :], req_lat[:, None], req_lng[:, None])
    )
    dense = np.where((distance <= 3000) & (seconds <= 1800), seconds, 1e9)
    rows, cols = linear_sum_assignment(dense)
    used = dense[rows, cols] < 1e9
    assert len(plan.assignments) == used.sum()
    assert sum(a.eta_s for a in plan.assignments) == dense[rows[used], cols[used]].sum()
