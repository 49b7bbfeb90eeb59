"""Small exact cases that pin the batch solver's answers."""

import numpy as np
import pytest

from dispatch.matching import (
    DriverSnapshot,
    MatchingSettings,
    RequestBatch,
    StraightLineEta,
    plan_batch,
)
from dispatch.matching.eta import EARTH_RADIUS_M

ETA = StraightLineEta(speed_kmh=36.0, circuity=1.0)  # 10 m/s: seconds are metres / 10
ORIGIN_LAT, ORIGIN_LNG = 40.75, -73.98


def east_of_origin(metres: list[float]) -> tuple[np.ndarray, np.ndarray]:
    lng = ORIGIN_LNG + np.degrees(
        np.array(metres) / (EARTH_RADIUS_M * np.cos(np.radians(ORIGIN_LAT)))
    )
    return np.full(len(metres), ORIGIN_LAT), lng


def requests_at(metres: list[float], waited_s=None, excluded=None) -> RequestBatch:
    lat, lng = east_of_origin(metres)
    n = len(metres)
    return RequestBatch(
        ride_ids=[f"r{i}" for i in range(n)],
        lat=lat,
        lng=lng,
        waited_s=np.zeros(n) if waited_s is None else np.array(waited_s, dtype=float),
        excluded=excluded or [frozenset()] * n,
    )


def drivers_at(metres: list[float], earned_cents=None) -> DriverSnapshot:
    lat, lng = east_of_origin(metres)
    n = len(metres)
    return DriverSnapshot(
        driver_ids=[f"d{i}" for i in range(n)],
        lat=lat,
        lng=lng,
        idle_s=np.zeros(n),
        earned_cents=np.zeros(n) if earned_cents is None else np.array(earned_cents, float),
    )


def pairs(plan) -> dict[str, tuple[str, int]]:
    return {a.ride_id: (a.driver_id, a.eta_s) for a in plan.assignments}


def test_beats_greedy_on_the_classic_two_by_two():
    # Greedy gives r0 its nearest driver d1 (90 s) and leaves r1 with d0 (290 s away):
    # 380 s in total. The optimum pays 100 + 100 = 200 s.
    plan = plan_batch(
        requests_at([0.0, 1900.0]), drivers_at([-1000.0, 900.0]), ETA, MatchingSettings()
    )
    assert pairs(plan) == {"r0": ("d0", 100), "r1": ("d1", 100)}
    assert plan.candidate_edges == 4


def test_matches_as_many_requests_as_possible_before_minimising_cost():
    # Pairing r0 with its nearest driver d0 would leave r1 unmatched (d1 is 4 km from r1, beyond
    # its 3 km radius), so the solver pays more to serve both.
    plan = plan_batch(
        requests_at([0.0, 2500.0]), drivers_at([1000.0, -1500.0]), ETA, MatchingSettings()
    )
    assert pairs(plan) == {"r0": ("d1", 150), "r1": ("d0", 150)}


def test_never_gives_one_driver_two_requests():
    plan = plan_batch(requests_at([0.0, 10.0, 20.0]), drivers_at([2.0]), ETA, MatchingSettings())
    assert pairs(plan) == {"r0": ("d0", 0)}


def test_never_offers_to_an_excluded_driver():
    excluded = [frozenset({"d0"})]
    plan = plan_batch(
        requests_at([0.0], excluded=excluded), drivers_at([100.0, 900.0]), ETA, MatchingSettings()
    )
    assert pairs(plan) == {"r0": ("d1", 90)}


def test_unmatched_when_every_driver_is_excluded():
    plan = plan_batch(
        requests_at([0.0], excluded=[frozenset({"d0"})]),
        drivers_at([100.0]),
        ETA,
        MatchingSettings(),
    )
    assert plan.assignments == []


@pytest.mark.parametrize(
    ("waited_s", "expected"),
    [(0.0, {}), (19.9, {}), (20.0, {"r0": ("d0", 500)}), (45.0, {"r0": ("d0", 500)})],
)
def test_radius_grows_with_the_wait(waited_s, expected):
    # The driver is 5 km away: beyond 3 km (fresh request), within 6 km after 20 s.
    plan = plan_batch(
        requests_at([0.0], waited_s=[waited_s]), drivers_at([5000.0]), ETA, MatchingSettings()
    )
    assert pairs(plan) == expected


def test_unmatched_beyond_the_pickup_eta_cap():
    settings = MatchingSettings(max_pickup_eta_s=200)
    plan = plan_batch(requests_at([0.0, 0.0]), drivers_at([1500.0, 2500.0]), ETA, settings)
    assert pairs(plan) == {"r0": ("d0", 150)} or pairs(plan) == {"r1": ("d0", 150)}
    assert len(plan.assignments) == 1


def test_fairness_term_prefers_the_lower_earner_when_weighted():
    requests = requests_at([0.0])
    drivers = drivers_at([100.0, 400.0], earned_cents=[10_000.0, 0.0])
    assert pairs(plan_batch(requests, drivers, ETA, MatchingSettings())) == {"r0": ("d0", 10)}
    # $100 above the lowest earner at 1 s per dollar outweighs 30 s more pickup.
    fair = MatchingSettings(fairness_weight=1.0)
    assert pairs(plan_batch(requests, drivers, ETA, fair)) == {"r0": ("d1", 40)}


def test_empty_batches():
    assert plan_batch(requests_at([]), drivers_at([0.0]), ETA, MatchingSettings()).assignments == []
    assert plan_batch(requests_at([0.0]), drivers_at([]), ETA, MatchingSettings()).assignments == []


def test_contested_hotspot_matches_as_many_as_the_dense_optimum():
    # 60 requests on one corner, 200 drivers spread along a line: each request's 16 nearest drivers
    # are the same 16, so a fixed short list would serve only 16. Widening must serve all 60.
    rng = np.random.default_rng(7)
    requests = requests_at(list(rng.uniform(0, 5, 60)))
    drivers = drivers_at(list(np.linspace(10, 2500, 200)))
    plan = plan_batch(requests, drivers, ETA, MatchingSettings())
    assert len(plan.assignments) == 60
    assert len({a.driver_id for a in plan.assignments}) == 60


def test_wait_priority_serves_the_rider_about_to_give_up_first():
    # One driver, two riders: a fresh one 100 m away and one who has waited 100 s, 300 m away.
    requests = requests_at([0.0, 400.0], waited_s=[0.0, 100.0])
    drivers = drivers_at([100.0])
    assert pairs(plan_batch(requests, drivers, ETA, MatchingSettings())) == {"r0": ("d0", 10)}
    prioritised = MatchingSettings(wait_priority=1.0)
    assert pairs(plan_batch(requests, drivers, ETA, prioritised)) == {"r1": ("d0", 30)}
    # When every rider can be served, the priority changes nothing.
    two_drivers = drivers_at([100.0, 500.0])
    assert pairs(plan_batch(requests, two_drivers, ETA, prioritised)) == pairs(
        plan_batch(requests, two_drivers, ETA, MatchingSettings())
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hops", [2, 0])
def test_random_batches_match_the_dense_optimum(seed, hops, monkeypatch):
    # Contested: 150 requests around two hotspots, 400 drivers spread wider. With no hops the
    # local re-plan of a widened request is rarely optimal, so its duals must send the round to
    # the whole-component re-solve.
    from scipy.optimize import linear_sum_assignment

    from dispatch.matching import batch

    monkeypatch.setattr(batch, "_NEIGHBOURHOOD_HOPS", hops)

    rng = np.random.default_rng(seed)
    hot = rng.integers(0, 2, 150)
    req_lat = 40.75 + hot * 0.02 + rng.normal(0, 0.002, 150)
    req_lng = -73.98 + rng.normal(0, 0.002, 150)
    drv_lat = 40.76 + rng.normal(0, 0.02, 400)
    drv_lng = -73.98 + rng.normal(0, 0.02, 400)
    waited = rng.uniform(0, 60, 150)
    requests = RequestBatch(
        [f"r{i}" for i in range(150)], req_lat, req_lng, waited, [frozenset()] * 150
    )
    drivers = DriverSnapshot(
        [f"d{i}" for i in range(400)], drv_lat, drv_lng, np.zeros(400), np.zeros(400)
    )
    eta = StraightLineEta()
    plan = plan_batch(requests, drivers, eta, MatchingSettings())

    from dispatch.matching.candidates import radius_for_wait
    from dispatch.matching.eta import haversine_m

    radius = radius_for_wait(waited, MatchingSettings().radius_schedule_m)
    distance = haversine_m(req_lat[:, None], req_lng[:, None], drv_lat[None, :], drv_lng[None, :])
    seconds = np.rint(
        eta.seconds(drv_lat[None, :], drv_lng[None, :], req_lat[:, None], req_lng[:, None])
    )
    allowed = (distance <= radius[:, None]) & (seconds <= 1800)
    dense = np.where(allowed, seconds, 1e9)
    rows, cols = linear_sum_assignment(dense)
    used = dense[rows, cols] < 1e9
    assert len(plan.assignments) == used.sum()
    assert sum(a.eta_s for a in plan.assignments) == dense[rows[used], cols[used]].sum()


def test_requests_with_no_search_radius_yet_get_no_offer_and_no_crash() -> None:
    from dispatch.matching import (
        DriverSnapshot,
        MatchingSettings,
        RequestBatch,
        StraightLineEta,
        plan_batch,
    )

    requests = RequestBatch(
        ride_ids=["early"],
        lat=np.array([40.75]),
        lng=np.array([-73.99]),
        waited_s=np.array([-3.0]),
        excluded=[frozenset()],
    )
    drivers = DriverSnapshot(
        driver_ids=["d"],
        lat=np.array([40.7501]),
        lng=np.array([-73.9901]),
        idle_s=np.zeros(1),
        earned_cents=np.zeros(1),
    )
    plan = plan_batch(requests, drivers, StraightLineEta(), MatchingSettings())
    assert plan.assignments == []
    assert plan.candidate_edges == 0


def test_solver_keeps_the_maximum_matching_when_its_augmenting_path_is_expensive():
    # {A-X, B-Y} costs 0 but leaves C unmatched; the only way to serve all three is the
    # three-pair path C-X, A-Y, B-Z at 3 x 1000 s, more than any small unmatched penalty pays.
    from dispatch.matching.solver import assign_max_matching_min_cost

    a, b, c = 0, 1, 2
    x, y, z = 0, 1, 2
    request_of = np.array([a, b, c, a, b])
    driver_of = np.array([x, y, x, y, z])
    cost = np.array([0, 0, 1000, 1000, 1000])
    result = assign_max_matching_min_cost(request_of, driver_of, cost, 3, 3)
    assert result.edge_used.tolist() == [False, False, True, True, True]
    assert result.total_cost == 3000


def test_solver_gives_a_request_its_own_driver_when_the_shared_one_is_needed_elsewhere():
    # d0 is wanted by both requests; d1 and d2 only by r0 (the cheaper, d1, is r0's fallback);
    # r2 lists only d3, its own.
    from dispatch.matching.solver import assign_max_matching_min_cost

    request_of = np.array([0, 0, 0, 1, 2])
    driver_of = np.array([0, 1, 2, 0, 3])
    cost = np.array([10, 20, 25, 30, 5])
    result = assign_max_matching_min_cost(request_of, driver_of, cost, 3, 4)
    assert result.edge_used.tolist() == [False, True, False, True, True]
    assert result.total_cost == 55


def test_a_far_driver_with_a_fast_road_is_found_past_slow_near_ones():
    # Road ETAs need not grow with distance: six drivers 1.9-2 km south are 1,900-1,990 s away
    # (past the 1,800 s cap), one 2.5 km north is 250 s away. The search must widen past the slow
    # ones instead of calling the list complete.
    from dispatch.matching.eta import haversine_m

    class OneFastRoad:
        min_seconds_per_metre = 0.1

        def seconds(self, lat1, lng1, lat2, lng2):
            metres = haversine_m(lat1, lng1, lat2, lng2)
            return metres * np.where(np.asarray(lat1) > ORIGIN_LAT, 0.1, 1.0)

    metres_north = np.array([-1900, -1920, -1940, -1960, -1980, -1990, 2500.0])
    lat = ORIGIN_LAT + np.degrees(metres_north / EARTH_RADIUS_M)
    drivers = DriverSnapshot(
        [f"d{i}" for i in range(7)], lat, np.full(7, ORIGIN_LNG), np.zeros(7), np.zeros(7)
    )
    plan = plan_batch(requests_at([0.0]), drivers, OneFastRoad(), MatchingSettings())
    assert pairs(plan) == {"r0": ("d6", 250)}
