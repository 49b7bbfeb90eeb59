"""The engine-only batch cycle against the real local Redis, and the dense optimum beside it.

One cycle: snapshot the online drivers from `coop:{bench}:drivers:geo` (one `GEOSEARCH ...
WITHHASH`, as the dispatcher does), find candidates in process, compute ETAs, solve
(`plan_batch`), and write the offers back in one round trip (one Redis hash per batch). It is the
matching engine's cost, not the dispatcher's: `run_cycle` in `dispatch.dispatcher.cycle` writes
offers and their events to PostgreSQL (`real_cycle` measures it beside this one). Drivers are
placed at real Uber pickups, requests at real taxi pickups (each jittered by up to ~30 m), so
requests crowd Manhattan while the fleet covers the city.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import redis
from scipy.optimize import linear_sum_assignment

from dispatch.core.heap import freeze_startup_heap
from dispatch.core.settings import get_settings
from dispatch.dispatcher.geo_snapshot import WHOLE_EARTH, decode_rows
from dispatch.matching.batch import (
    Assignment,
    DriverSnapshot,
    MatchingSettings,
    RequestBatch,
    plan_batch,
)
from dispatch.matching.candidates import radius_for_wait
from dispatch.matching.eta import FloatArray, StraightLineEta, haversine_m
from dispatch.simulation.demand import NYC_BOX, _read_rows

BENCH_REGION = "bench"
OFFER_TTL_S = 30
_JITTER_DEG = 0.0003
# Disallowed pairs in the dense matrix cost more than any full matching of allowed pairs, so the
# dense solve also matches as many requests as possible before minimising cost.
_DISALLOWED_COST = 1e9


def drivers_geo_key(region: str) -> str:
    return f"coop:{{{region}}}:drivers:geo"


def batch_offers_key(region: str, batch_id: str) -> str:
    return f"coop:{{{region}}}:offers:{batch_id}"


def read_drivers(client: redis.Redis, key: str) -> tuple[list[str], FloatArray, FloatArray]:
    """Every member of a GEO key with its position, in one round trip (as the dispatcher's)."""
    rows = client.execute_command("GEOSEARCH", key, *WHOLE_EARTH)  # type: ignore[no-untyped-call]
    return decode_rows(rows)


def write_offers(
    client: redis.Redis, region: str, batch_id: str, assignments: Sequence[Assignment], ttl_s: int
) -> None:
    """One round trip: the batch's offers as one hash, ride id -> `<driver_id>:<eta_s>`, that
    expires with them (a batch's offers all share one TTL)."""
    if not assignments:
        return
    key = batch_offers_key(region, batch_id)
    fields: list[str] = []
    for a in assignments:
        fields += (a.ride_id, f"{a.driver_id}:{a.eta_s}")
    # Raw commands: redis-py's `hset(mapping=...)` costs more than Redis does for 2,000 fields.
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("HSET", key, *fields)  # type: ignore[no-untyped-call]
    pipe.execute_command("EXPIRE", key, ttl_s)  # type: ignore[no-untyped-call]
    pipe.execute()


def bench_redis() -> redis.Redis:
    """The Redis of COOP_REDIS_URL (the private one `make bench` starts), with replies decoded
    to text as the dispatcher's client has them."""
    return redis.Redis.from_url(get_settings().redis_url, decode_responses=True)


@dataclass(frozen=True)
class CycleTimes:
    snapshot_ms: float
    plan_ms: float
    write_ms: float
    total_ms: float
    cpu_ms: float  # this process's CPU time over the cycle: what the cycle costs without contention
    candidate_edges: int
    matched: int


@dataclass
class SizeResult:
    n_requests: int
    n_drivers: int
    cycles: list[CycleTimes] = field(default_factory=list)
    sparse_matched: list[int] = field(default_factory=list)
    sparse_cost: list[int] = field(default_factory=list)
    sparse_plan_ms: list[float] = field(default_factory=list)
    dense_matched: list[int] = field(default_factory=list)
    dense_cost: list[int] = field(default_factory=list)
    dense_ms: list[float] = field(default_factory=list)


def _points(path: Path, n: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    rows = _read_rows(path, NYC_BOX)
    drawn = rng.integers(0, len(rows.pickup_lat), n)
    jitter = rng.uniform(-_JITTER_DEG, _JITTER_DEG, (2, n))
    return rows.pickup_lat[drawn] + jitter[0], rows.pickup_lng[drawn] + jitter[1]


def make_batch(
    taxi_path: Path, uber_path: Path, n_requests: int, n_drivers: int, seed: int
) -> tuple[RequestBatch, DriverSnapshot]:
    """Requests waiting 0–60 s (so all three radius steps occur), 5% with one declined driver."""
    rng = np.random.default_rng(seed)
    request_lat, request_lng = _points(taxi_path, n_requests, rng)
    driver_lat, driver_lng = _points(uber_path, n_drivers, rng)
    driver_ids = [f"drv-{seed}-{i}" for i in range(n_drivers)]
    declined = rng.random(n_requests) < 0.05
    excluded = [
        frozenset({driver_ids[int(rng.integers(n_drivers))]}) if d else frozenset()
        for d in declined.tolist()
    ]
    requests = RequestBatch(
        ride_ids=[f"ride-{seed}-{i}" for i in range(n_requests)],
        lat=request_lat,
        lng=request_lng,
        waited_s=rng.uniform(0, 60, n_requests),
        excluded=excluded,
    )
    drivers = DriverSnapshot(
        driver_ids=driver_ids,
        lat=driver_lat,
        lng=driver_lng,
        idle_s=np.zeros(n_drivers),
        earned_cents=np.zeros(n_drivers),
    )
    return requests, drivers


def load_fleet(client: redis.Redis, drivers: DriverSnapshot, region: str = BENCH_REGION) -> str:
    key = drivers_geo_key(region)
    client.delete(key)
    members: list[float | str] = []
    for driver_id, lat, lng in zip(
        drivers.driver_ids, drivers.lat.tolist(), drivers.lng.tolist(), strict=True
    ):
        members += [lng, lat, driver_id]
    client.geoadd(key, members)
    return key


def run_cycle(
    client: redis.Redis,
    key: str,
    requests: RequestBatch,
    settings: MatchingSettings,
    eta: StraightLineEta,
    batch_id: str,
) -> CycleTimes:
    started = time.perf_counter()
    cpu_started = time.process_time()
    driver_ids, lat, lng = read_drivers(client, key)
    n = len(driver_ids)
    drivers = DriverSnapshot(driver_ids, lat, lng, np.zeros(n), np.zeros(n))
    snapshot_done = time.perf_counter()
    plan = plan_batch(requests, drivers, eta, settings)
    plan_done = time.perf_counter()
    write_offers(client, BENCH_REGION, batch_id, plan.assignments, OFFER_TTL_S)
    finished = time.perf_counter()
    cpu_ms = (time.process_time() - cpu_started) * 1000
    return CycleTimes(
        snapshot_ms=(snapshot_done - started) * 1000,
        plan_ms=(plan_done - snapshot_done) * 1000,
        write_ms=(finished - plan_done) * 1000,
        total_ms=(finished - started) * 1000,
        cpu_ms=cpu_ms,
        candidate_edges=plan.candidate_edges,
        matched=len(plan.assignments),
    )


def dense_optimum(
    requests: RequestBatch,
    drivers: DriverSnapshot,
    eta: StraightLineEta,
    settings: MatchingSettings,
) -> tuple[int, int, float]:
    """(matched, total cost, ms) of `linear_sum_assignment` over every pair, same radius and cap."""
    started = time.perf_counter()
    n_requests, n_drivers = len(requests.ride_ids), len(drivers.driver_ids)
    radius = radius_for_wait(requests.waited_s, settings.radius_schedule_m)
    position = {d: i for i, d in enumerate(drivers.driver_ids)}
    cost = np.empty((n_requests, n_drivers), dtype=np.float64)
    for first in range(0, n_requests, 256):
        rows = slice(first, min(first + 256, n_requests))
        lat, lng = requests.lat[rows, None], requests.lng[rows, None]
        distance = haversine_m(lat, lng, drivers.lat[None, :], drivers.lng[None, :])
        seconds = np.rint(eta.seconds(drivers.lat[None, :], drivers.lng[None, :], lat, lng))
        allowed = (distance <= radius[rows, None]) & (seconds <= settings.max_pickup_eta_s)
        cost[rows] = np.where(allowed, seconds, _DISALLOWED_COST)
    for r, ids in enumerate(requests.excluded):
        for driver_id in ids:
            if driver_id in position:
                cost[r, position[driver_id]] = _DISALLOWED_COST
    row, col = linear_sum_assignment(cost)
    chosen = cost[row, col] < _DISALLOWED_COST
    elapsed_ms = (time.perf_counter() - started) * 1000
    return int(chosen.sum()), int(cost[row[chosen], col[chosen]].sum()), elapsed_ms


def sparse_cost(plan_assignments_eta: npt.NDArray[np.int64]) -> int:
    return int(plan_assignments_eta.sum())


def measure_size(
    n_requests: int,
    n_drivers: int,
    seeds: list[int],
    cycles_per_seed: int,
    taxi_path: Path,
    uber_path: Path,
    with_dense: bool,
    dense_seeds: tuple[int, ...] = (),
    progress: bool = True,
) -> SizeResult:
    client = bench_redis()
    eta = StraightLineEta()
    settings = MatchingSettings()
    result = SizeResult(n_requests, n_drivers)
    freeze_startup_heap()  # as the dispatcher process does once it has started
    for seed in seeds:
        requests, drivers = make_batch(taxi_path, uber_path, n_requests, n_drivers, seed)
        key = load_fleet(client, drivers)
        batch_ids = [f"{seed}-{cycle}" for cycle in range(cycles_per_seed + 1)]
        run_cycle(client, key, requests, settings, eta, batch_ids[0])  # warm caches and code
        for batch_id in batch_ids[1:]:
            result.cycles.append(run_cycle(client, key, requests, settings, eta, batch_id))
        plan = plan_batch(requests, drivers, eta, settings)
        result.sparse_plan_ms.append(plan.solve_ms)
        result.sparse_matched.append(len(plan.assignments))
        result.sparse_cost.append(sum(a.eta_s for a in plan.assignments))
        if with_dense and seed in dense_seeds:
            matched, cost, ms = dense_optimum(requests, drivers, eta, settings)
            result.dense_matched.append(matched)
            result.dense_cost.append(cost)
            result.dense_ms.append(ms)
        client.delete(key, *[batch_offers_key(BENCH_REGION, b) for b in batch_ids])
        if progress:
            last = result.cycles[-cycles_per_seed:]
            print(
                f"  {n_requests}x{n_drivers} seed {seed}: cycle median "
                f"{np.median([c.total_ms for c in last]):.1f} ms"
                + (f", dense {result.dense_ms[-1]:.0f} ms" if result.dense_ms else ""),
                flush=True,
            )
    return result


def geosearch_per_request(
    n_drivers: int, n_requests: int, uber_path: Path, taxi_path: Path, seed: int = 0
) -> tuple[float, float]:
    """(median ms per request, total ms) for one `GEOSEARCH ... COUNT 20` round trip per request."""
    rng = np.random.default_rng(seed)
    client = bench_redis()
    driver_lat, driver_lng = _points(uber_path, n_drivers, rng)
    request_lat, request_lng = _points(taxi_path, n_requests, rng)
    key = drivers_geo_key(BENCH_REGION)
    client.delete(key)
    members: list[float | str] = []
    for i, (lat, lng) in enumerate(zip(driver_lat.tolist(), driver_lng.tolist(), strict=True)):
        members += [lng, lat, f"drv-{i}"]
    client.geoadd(key, members)
    per_request = []
    started = time.perf_counter()
    for lat, lng in zip(request_lat.tolist(), request_lng.tolist(), strict=True):
        t = time.perf_counter()
        client.geosearch(
            key, longitude=lng, latitude=lat, radius=3000, unit="m", sort="ASC", count=20
        )
        per_request.append((time.perf_counter() - t) * 1000)
    total_ms = (time.perf_counter() - started) * 1000
    client.delete(key)
    return float(np.median(per_request)), total_ms
