"""Replay demand against a fleet in simulated time, under one dispatch policy.

Drivers drive to the pickup and then to the dropoff at the ETA model's speed and become free where
they drop off. Each offer is declined with probability `decline_share`; the declining driver is
then excluded for that request. Whether a driver declines a request is drawn once per (seed,
request, driver), so that every policy meets the same answers (common random numbers: a comparison
of policies is not blurred by declines falling differently). A request nobody has accepted
`search_timeout_s` after it was made is abandoned. Greedy policies react to every event (a request,
a driver freeing up, a request's radius widening); batched policies call `plan_batch`, the
production code, every `batch_interval_s` of simulated time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from dispatch.matching.batch import (
    Assignment,
    DriverSnapshot,
    MatchingSettings,
    RequestBatch,
    plan_batch,
)
from dispatch.matching.candidates import radius_for_wait
from dispatch.matching.eta import EtaModel, FloatArray, StraightLineEta, haversine_m
from dispatch.simulation.demand import Demand

# Fare used to credit drivers: NYC's 2013 meter, $2.50 plus $1.55 per driven km.
FARE_BASE_CENTS = 250.0
FARE_CENTS_PER_KM = 155.0

QueueRule = Literal["oldest", "nearest"]


@dataclass(frozen=True)
class Policy:
    """`greedy`: nearest free driver when a request arrives; a driver who frees up while requests
    wait serves the oldest or the nearest of them (`queue_rule`). `batched`: `plan_batch`."""

    name: str
    kind: Literal["greedy", "batched"]
    queue_rule: QueueRule = "nearest"
    fairness_weight: float = 0.0
    wait_priority: float | None = None  # None: the scenario's MatchingSettings value


GREEDY_OLDEST = Policy("greedy-oldest", "greedy", queue_rule="oldest")
GREEDY_NEAREST = Policy("greedy-nearest", "greedy", queue_rule="nearest")
BATCHED = Policy("batched", "batched")


def batched_fair(weight: float) -> Policy:
    return Policy(f"batched-fair-{weight:g}", "batched", fairness_weight=weight)


def batched_wait_priority(weight: float) -> Policy:
    return Policy(f"batched-priority-{weight:g}", "batched", wait_priority=weight)


@dataclass(frozen=True)
class SimulationConfig:
    fleet_size: int
    seed: int = 0
    decline_share: float = 0.1
    search_timeout_s: float = 300.0
    batch_interval_s: float = 2.0
    matching: MatchingSettings = field(default_factory=MatchingSettings)
    # Batched policies: also decide every batch nearest-first in arrival order, for comparison.
    shadow_greedy: bool = False


@dataclass
class SimulationResult:
    policy: Policy
    horizon_s: float
    served: npt.NDArray[np.bool_]
    pickup_wait_s: FloatArray  # request to pickup, for served requests (NaN otherwise)
    pickup_m: FloatArray  # driven metres to the pickup, for served requests
    pickup_eta_s: FloatArray  # the drive to the pickup alone, for served requests
    driver_busy_s: FloatArray  # within the horizon
    driver_earned_cents: FloatArray
    batch_solve_ms: list[float] = field(default_factory=list)
    batch_requests: list[int] = field(default_factory=list)
    batch_drivers: list[int] = field(default_factory=list)
    batch_edges: list[int] = field(default_factory=list)
    # With `shadow_greedy`, one row per request per batch: the driver the plan offers it and the
    # one nearest-first in arrival order would offer on the same drivers (-1 and NaN: none).
    paired_request: list[int] = field(default_factory=list)
    paired_batched_driver: list[int] = field(default_factory=list)
    paired_greedy_driver: list[int] = field(default_factory=list)
    paired_batched_eta_s: list[float] = field(default_factory=list)
    paired_greedy_eta_s: list[float] = field(default_factory=list)


class _Event(IntEnum):
    DRIVER_FREE = 0
    REQUEST = 1
    RADIUS_WIDENS = 2
    TIMEOUT = 3


class _Fleet:
    """State shared by both kinds of policy: where drivers are, when they are free, the ledger."""

    def __init__(
        self,
        demand: Demand,
        start_lat: FloatArray,
        start_lng: FloatArray,
        eta: EtaModel,
        config: SimulationConfig,
        policy: Policy,
        trip_s: FloatArray,
        trip_m: FloatArray,
    ) -> None:
        self.demand, self.eta, self.config = demand, eta, config
        self.lat, self.lng = start_lat.copy(), start_lng.copy()
        n = len(start_lat)
        self.free_at = np.zeros(n)
        self.idle = np.ones(n, dtype=np.bool_)
        self.trip_s, self.trip_m = trip_s, trip_m
        self.circuity = eta.circuity if isinstance(eta, StraightLineEta) else 1.3
        self.result = SimulationResult(
            policy=policy,
            horizon_s=demand.window_s,
            served=np.zeros(len(demand), dtype=np.bool_),
            pickup_wait_s=np.full(len(demand), np.nan),
            pickup_m=np.full(len(demand), np.nan),
            pickup_eta_s=np.full(len(demand), np.nan),
            driver_busy_s=np.zeros(n),
            driver_earned_cents=np.zeros(n),
        )
        self.open = np.zeros(len(demand), dtype=np.bool_)
        self.excluded: list[set[int]] = [set() for _ in range(len(demand))]

    def accepts(self, request: int, driver: int) -> bool:
        if _uniform(self.config.seed, request, driver) < self.config.decline_share:
            self.excluded[request].add(driver)
            return False
        return True

    def reachable(
        self, drivers: npt.NDArray[np.int64], request: int, radius_m: float
    ) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """Those of `drivers` within the radius and the ETA cap of the pickup, with their ETAs."""
        lat, lng = self.demand.pickup_lat[request], self.demand.pickup_lng[request]
        distance = haversine_m(self.lat[drivers], self.lng[drivers], lat, lng)
        drivers = drivers[distance <= radius_m]
        pickup_s = np.rint(self.eta.seconds(self.lat[drivers], self.lng[drivers], lat, lng))
        within_cap = pickup_s <= self.config.matching.max_pickup_eta_s
        return drivers[within_cap], pickup_s[within_cap]

    def commit(self, now: float, request: int, driver: int, pickup_s: float) -> None:
        demand, result = self.demand, self.result
        pickup_m = (
            float(
                haversine_m(
                    self.lat[driver],
                    self.lng[driver],
                    demand.pickup_lat[request],
                    demand.pickup_lng[request],
                )
            )
            * self.circuity
        )
        free_at = now + pickup_s + self.trip_s[request]
        result.served[request] = True
        result.pickup_wait_s[request] = now - demand.request_s[request] + pickup_s
        result.pickup_m[request] = pickup_m
        result.pickup_eta_s[request] = pickup_s
        result.driver_busy_s[driver] += max(0.0, min(free_at, result.horizon_s) - now)
        result.driver_earned_cents[driver] += FARE_BASE_CENTS + FARE_CENTS_PER_KM * (
            self.trip_m[request] / 1000
        )
        self.idle[driver] = False
        self.free_at[driver] = free_at
        self.lat[driver], self.lng[driver] = (
            demand.dropoff_lat[request],
            demand.dropoff_lng[request],
        )
        self.open[request] = False


_MASK = (1 << 64) - 1


def _uniform(seed: int, request: int, driver: int) -> float:
    """A uniform draw in [0, 1) fixed by its arguments (splitmix64's finaliser)."""
    x = seed * 0x9E3779B97F4A7C15 + request * 0xBF58476D1CE4E5B9 + driver * 0xD6E8FEB86659FD93
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((x ^ (x >> 31)) >> 11) * 2.0**-53


def simulate(
    demand: Demand,
    start_lat: FloatArray,
    start_lng: FloatArray,
    policy: Policy,
    config: SimulationConfig,
    eta: EtaModel,
    progress: Callable[[float], None] | None = None,
) -> SimulationResult:
    """Run one policy over the demand. Same inputs and seed give the same result.

    `progress`, if given, is called with the share of simulated time done, every tenth or so.
    """
    trip_s = eta.seconds(
        demand.pickup_lat, demand.pickup_lng, demand.dropoff_lat, demand.dropoff_lng
    )
    circuity = eta.circuity if isinstance(eta, StraightLineEta) else 1.3
    trip_m = (
        haversine_m(demand.pickup_lat, demand.pickup_lng, demand.dropoff_lat, demand.dropoff_lng)
        * circuity
    )
    fleet = _Fleet(demand, start_lat, start_lng, eta, config, policy, trip_s, trip_m)
    report = _ProgressReport(demand.window_s + config.search_timeout_s, progress)
    if policy.kind == "greedy":
        _run_greedy(fleet, policy.queue_rule, report)
    else:
        _run_batched(fleet, policy, report)
    return fleet.result


class _ProgressReport:
    def __init__(self, end_s: float, callback: Callable[[float], None] | None) -> None:
        self._end_s, self._callback, self._next_share = end_s, callback, 0.1

    def at(self, now: float) -> None:
        if self._callback is not None and now >= self._next_share * self._end_s:
            self._callback(min(1.0, now / self._end_s))
            self._next_share = np.floor(now / self._end_s * 10 + 1) / 10


def _run_greedy(fleet: _Fleet, queue_rule: QueueRule, report: _ProgressReport) -> None:
    demand, config = fleet.demand, fleet.config
    settings = config.matching
    events: list[tuple[float, int, int]] = [
        (float(t), _Event.REQUEST, r) for r, t in enumerate(demand.request_s.tolist())
    ]
    heapq.heapify(events)
    widen_after = sorted(wait for wait, _ in settings.radius_schedule_m if wait > 0)

    def radius_now(request: int, now: float) -> float:
        waited = np.array([now - demand.request_s[request]])
        return float(radius_for_wait(waited, settings.radius_schedule_m)[0])

    def offer_nearest_driver(request: int, now: float) -> None:
        drivers = np.flatnonzero(fleet.idle)
        if len(drivers) == 0:
            return
        drivers, pickup_s = fleet.reachable(drivers, request, radius_now(request, now))
        for position in np.argsort(pickup_s, kind="stable").tolist():
            driver = int(drivers[position])
            if driver in fleet.excluded[request]:
                continue
            if fleet.accepts(request, driver):
                fleet.commit(now, request, driver, float(pickup_s[position]))
                heapq.heappush(events, (fleet.free_at[driver], _Event.DRIVER_FREE, driver))
                return

    def serve_from_queue(driver: int, now: float) -> None:
        waiting = np.flatnonzero(fleet.open)
        if len(waiting) == 0:
            return
        waited = now - demand.request_s[waiting]
        radius = radius_for_wait(waited, settings.radius_schedule_m)
        lat, lng = fleet.lat[driver], fleet.lng[driver]
        distance = haversine_m(lat, lng, demand.pickup_lat[waiting], demand.pickup_lng[waiting])
        near = distance <= radius
        waiting, waited = waiting[near], waited[near]
        pickup_s = np.rint(
            fleet.eta.seconds(lat, lng, demand.pickup_lat[waiting], demand.pickup_lng[waiting])
        )
        within_cap = pickup_s <= settings.max_pickup_eta_s
        waiting, waited, pickup_s = waiting[within_cap], waited[within_cap], pickup_s[within_cap]
        order = np.argsort(-waited if queue_rule == "oldest" else pickup_s, kind="stable")
        for position in order.tolist():
            request = int(waiting[position])
            if driver in fleet.excluded[request]:
                continue
            if fleet.accepts(request, driver):
                fleet.commit(now, request, driver, float(pickup_s[position]))
                heapq.heappush(events, (fleet.free_at[driver], _Event.DRIVER_FREE, driver))
                return

    while events:
        now, kind, index = heapq.heappop(events)
        report.at(now)
        if kind == _Event.DRIVER_FREE:
            fleet.idle[index] = True
            serve_from_queue(index, now)
        elif kind == _Event.REQUEST:
            fleet.open[index] = True
            offer_nearest_driver(index, now)
            if fleet.open[index]:
                for wait in widen_after:
                    if wait < config.search_timeout_s:
                        heapq.heappush(events, (now + wait, _Event.RADIUS_WIDENS, index))
                heapq.heappush(events, (now + config.search_timeout_s, _Event.TIMEOUT, index))
        elif kind == _Event.RADIUS_WIDENS:
            if fleet.open[index]:
                offer_nearest_driver(index, now)
        else:
            fleet.open[index] = False


def _run_batched(fleet: _Fleet, policy: Policy, report: _ProgressReport) -> None:
    demand, config = fleet.demand, fleet.config
    settings = replace(config.matching, fairness_weight=policy.fairness_weight)
    if policy.wait_priority is not None:
        settings = replace(settings, wait_priority=policy.wait_priority)
    interval = config.batch_interval_s
    ride_ids = [str(r) for r in range(len(demand))]
    driver_ids = [str(d) for d in range(len(fleet.lat))]
    next_request = 0
    tick = 0
    end_s = demand.window_s + config.search_timeout_s
    while tick * interval <= end_s:
        now = tick * interval
        report.at(now)
        fleet.idle |= fleet.free_at <= now
        arrived = int(np.searchsorted(demand.request_s, now, side="right"))
        fleet.open[next_request:arrived] = True
        next_request = arrived
        waiting = np.flatnonzero(fleet.open)
        timed_out = waiting[now - demand.request_s[waiting] > config.search_timeout_s]
        fleet.open[timed_out] = False
        waiting = np.flatnonzero(fleet.open)
        free = np.flatnonzero(fleet.idle)

        if len(waiting) and len(free):
            _dispatch_batch(fleet, now, waiting, free, ride_ids, driver_ids, settings)
            tick += 1
            continue
        # Nothing to match: jump to the next tick at which something can change.
        upcoming = [end_s + interval]
        if next_request < len(demand):
            upcoming.append(float(demand.request_s[next_request]))
        if len(waiting):
            busy_until = fleet.free_at[~fleet.idle]
            if len(busy_until):
                upcoming.append(float(busy_until.min()))
        tick = max(tick + 1, int(np.ceil(min(upcoming) / interval)))


def _dispatch_batch(
    fleet: _Fleet,
    now: float,
    waiting: npt.NDArray[np.int64],
    free: npt.NDArray[np.int64],
    ride_ids: list[str],
    driver_ids: list[str],
    settings: MatchingSettings,
) -> None:
    demand = fleet.demand
    requests = RequestBatch(
        ride_ids=[ride_ids[r] for r in waiting.tolist()],
        lat=demand.pickup_lat[waiting],
        lng=demand.pickup_lng[waiting],
        waited_s=now - demand.request_s[waiting],
        excluded=[frozenset(driver_ids[d] for d in fleet.excluded[r]) for r in waiting.tolist()],
    )
    drivers = DriverSnapshot(
        driver_ids=[driver_ids[d] for d in free.tolist()],
        lat=fleet.lat[free],
        lng=fleet.lng[free],
        idle_s=now - fleet.free_at[free],
        earned_cents=fleet.result.driver_earned_cents[free],
    )
    plan = plan_batch(requests, drivers, fleet.eta, settings)
    result = fleet.result
    if fleet.config.shadow_greedy:
        _record_shadow_greedy(fleet, now, waiting, free, plan.assignments, settings)
    result.batch_solve_ms.append(plan.solve_ms)
    result.batch_requests.append(len(waiting))
    result.batch_drivers.append(len(free))
    result.batch_edges.append(plan.candidate_edges)
    for assignment in plan.assignments:
        request, driver = int(assignment.ride_id), int(assignment.driver_id)
        if fleet.accepts(request, driver):
            fleet.commit(now, request, driver, float(assignment.eta_s))


def _record_shadow_greedy(
    fleet: _Fleet,
    now: float,
    waiting: npt.NDArray[np.int64],
    free: npt.NDArray[np.int64],
    assignments: list[Assignment],
    settings: MatchingSettings,
) -> None:
    """The offers nearest-first in arrival order would make on this batch's drivers, beside the
    plan's (a driver offered once is taken for the batch, as in the plan)."""
    demand, result = fleet.demand, fleet.result
    planned = {int(a.ride_id): (int(a.driver_id), float(a.eta_s)) for a in assignments}
    untaken = set(free.tolist())
    radius = radius_for_wait(now - demand.request_s[waiting], settings.radius_schedule_m)
    for request, radius_m in zip(waiting.tolist(), radius.tolist(), strict=True):
        candidates = np.array(sorted(untaken - fleet.excluded[request]), dtype=np.int64)
        drivers, pickup_s = fleet.reachable(candidates, request, radius_m)
        greedy_driver, greedy_s = -1, np.nan
        if len(drivers):
            nearest = int(np.argmin(pickup_s))
            greedy_driver, greedy_s = int(drivers[nearest]), float(pickup_s[nearest])
            untaken.discard(greedy_driver)
        batched_driver, batched_s = planned.get(request, (-1, np.nan))
        result.paired_request.append(request)
        result.paired_batched_driver.append(batched_driver)
        result.paired_greedy_driver.append(greedy_driver)
        result.paired_batched_eta_s.append(batched_s)
        result.paired_greedy_eta_s.append(greedy_s)
