"""The fleet simulator: reproducible under a seed, sane on the real taxi file."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from dispatch.matching import StraightLineEta
from dispatch.simulation.cli import build_scenario, main, run_policy
from dispatch.simulation.demand import TripShapes, load_demand
from dispatch.simulation.engine import BATCHED, GREEDY_NEAREST, GREEDY_OLDEST, batched_fair
from dispatch.simulation.metrics import gini, lowest_decile_share

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TAXI = DATA / "nyc_yellow_taxi_2013-01-01_debs2015_sample.csv"
UBER = DATA / "nyc_uber_pickups_2014-04-01_to_04-12_B02512_B02598.csv"


@pytest.fixture(scope="module")
def taxi_scenario():
    # Three minutes of the New Year's Eve peak with a small fleet, so requests queue.
    return build_scenario(
        TAXI,
        datetime(2013, 1, 1, 0, 10),
        datetime(2013, 1, 1, 0, 13),
        fleet_size=250,
        seed=3,
        search_timeout_s=120.0,
    )


def test_taxi_window_is_loaded_in_time_order():
    demand = load_demand(TAXI, datetime(2013, 1, 1), datetime(2013, 1, 1, 0, 30), seed=0)
    assert 5_500 < len(demand) < 6_100
    assert np.all(np.diff(demand.request_s) >= 0)
    assert demand.request_s.min() >= 0 and demand.request_s.max() < 1800
    assert len(demand.vehicle_start_lat) > 4_000


def test_uber_dropoffs_are_drawn_from_taxi_trip_shapes():
    shapes = TripShapes.from_trip_file(TAXI)
    demand = load_demand(UBER, datetime(2014, 4, 4, 18), datetime(2014, 4, 4, 19), 0, shapes)
    assert 700 < len(demand) < 900  # the README's busiest hour: 822 pickups
    trip_km = np.hypot(
        (demand.dropoff_lat - demand.pickup_lat) * 111.0,
        (demand.dropoff_lng - demand.pickup_lng) * 84.0,
    )
    assert 1.5 < np.median(trip_km) < 3.5


def test_seeded_simulation_is_reproducible(taxi_scenario):
    eta = StraightLineEta()
    for policy in (GREEDY_NEAREST, BATCHED):
        first = run_policy(taxi_scenario, policy, eta).as_dict()
        second = run_policy(taxi_scenario, policy, eta).as_dict()
        for timing in ("solve_p50_ms", "solve_p95_ms", "solve_max_ms"):
            first.pop(timing), second.pop(timing)
        assert first == second


def test_policies_serve_the_peak_plausibly(taxi_scenario):
    eta = StraightLineEta()
    summaries = {
        p.name: run_policy(taxi_scenario, p, eta)
        for p in (GREEDY_OLDEST, GREEDY_NEAREST, BATCHED, batched_fair(2.0))
    }
    for summary in summaries.values():
        assert 20 < summary.served_pct <= 100
        assert 0 < summary.wait_mean_s < 1800 + 300
        assert 0 < summary.utilisation_pct <= 100
    # Sending freed drivers to the oldest request, however far, costs pickup time.
    assert summaries["greedy-oldest"].wait_mean_s > summaries["greedy-nearest"].wait_mean_s
    assert summaries["batched"].batches > 0
    assert summaries["greedy-nearest"].batches == 0


def test_inequality_measures():
    assert gini(np.array([5.0, 5.0, 5.0])) == pytest.approx(0.0)
    assert gini(np.array([0.0, 0.0, 0.0, 10.0])) == pytest.approx(0.75)
    assert lowest_decile_share(np.arange(1.0, 11.0)) == pytest.approx(1 / 55)


def test_command_line_prints_one_row_per_policy(capsys):
    code = main(
        [
            "--trips", str(TAXI),
            "--start", "2013-01-01T00:10:00",
            "--end", "2013-01-01T00:12:00",
            "--fleet", "200",
            "--policies", "greedy-nearest,batched",
        ]
    )  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "| greedy-nearest |" in table and "| batched |" in table
