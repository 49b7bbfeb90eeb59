"""The fleet simulator: reproducible under a seed, sane on the real taxi file."""

from datetime import datetime

import numpy as np
import pytest

from dispatch.matching import StraightLineEta
from dispatch.simulation.command import main
from dispatch.simulation.datasets import DATA_DIR, TAXI_FILE, UBER_FILE
from dispatch.simulation.demand import Demand, TripShapes, load_demand
from dispatch.simulation.engine import (
    BATCHED,
    GREEDY_NEAREST,
    GREEDY_OLDEST,
    SimulationConfig,
    _uniform,
    batched_fair,
    simulate,
)
from dispatch.simulation.metrics import gini, lowest_decile_share
from dispatch.simulation.scenario import build_scenario, run_policy

TAXI = DATA_DIR / TAXI_FILE
UBER = DATA_DIR / UBER_FILE


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


def _line_demand(pickup_lng: list[float], request_s: list[float]) -> Demand:
    """Requests on the 40.75° parallel, so that positions are metres along one line."""
    n = len(pickup_lng)
    lat = np.full(n, 40.75)
    lng = np.array(pickup_lng)
    return Demand(
        window_start=datetime(2014, 4, 4),
        window_s=60.0,
        request_s=np.array(request_s),
        pickup_lat=lat,
        pickup_lng=lng,
        dropoff_lat=lat,
        dropoff_lng=lng + 0.01,
        vehicle_start_lat=lat,
        vehicle_start_lng=lng,
    )


def test_shadow_greedy_records_nearest_first_beside_the_plan():
    # One degree of longitude here is about 84.3 km: drivers 600 m east and 700 m west of the
    # first pickup, the second pickup 1,000 m east. Nearest-first gives the first rider the
    # driver the second one needs (600 + 1,700 m); the plan crosses them (700 + 400 m).
    metre = 1 / 84_300
    demand = _line_demand([-73.98, -73.98 + 1000 * metre], [0.5, 1.0])
    driver_lng = np.array([-73.98 + 600 * metre, -73.98 - 700 * metre])
    config = SimulationConfig(fleet_size=2, decline_share=0.0, shadow_greedy=True)
    eta = StraightLineEta()
    result = simulate(demand, np.full(2, 40.75), driver_lng, BATCHED, config, eta)
    assert result.paired_request == [0, 1]
    batched, greedy = np.array(result.paired_batched_eta_s), np.array(result.paired_greedy_eta_s)
    assert batched.sum() < 0.6 * greedy.sum()
    assert greedy[1] > greedy[0] and batched[1] < batched[0]
    assert result.paired_greedy_driver == [0, 1] and result.paired_batched_driver == [1, 0]
    assert result.served.all()


def test_decline_draws_are_fixed_per_pair_and_uniform():
    # Drawn from (seed, request, driver), not from a stream: the order in which a policy makes its
    # offers cannot change who declines, so every policy meets the same drivers' answers.
    draws = np.array([_uniform(3, r, d) for r in range(200) for d in range(50)])
    assert np.array_equal(draws, [_uniform(3, r, d) for r in range(200) for d in range(50)])
    assert np.all((draws >= 0) & (draws < 1))
    assert np.histogram(draws, bins=10, range=(0, 1))[0].min() > 900
    assert _uniform(3, 1, 2) != _uniform(4, 1, 2)
    assert _uniform(3, 1, 2) != _uniform(3, 2, 1)
