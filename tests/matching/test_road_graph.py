"""Road-graph ETAs on the real Manhattan graph."""

from pathlib import Path

import numpy as np
import pytest

from dispatch.matching import StraightLineEta
from dispatch.matching.road_graph import RoadGraphEta

GRAPH = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "manhattan_road_graph"
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
