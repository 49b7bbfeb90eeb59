"""One dispatch batch: open requests and free drivers in, offers out. Pure and time-limited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dispatch.matching.candidates import IntArray, PlanarIndex, radius_for_wait
from dispatch.matching.eta import EtaModel, FloatArray, haversine_m
from dispatch.matching.solver import Duals, assign_max_matching_min_cost, minimal_request_duals

# Each request starts with its nearest few drivers. A fixed short list silently drops matches when
# drivers are contested, so after each solve the LP duals tell which requests could still gain
# from a driver left off their list (dual above the cheapest cost a left-off driver can have):
# those lists grow and only the components they touch are re-solved. When no request is flagged,
# the plan is optimal over every pair within the radii and the ETA cap.
INITIAL_CANDIDATES_PER_REQUEST = 4
MAX_WIDENING_ROUNDS = 12
# How far around a widened request a round re-plans before falling back to its whole component.
_NEIGHBOURHOOD_HOPS = 2
# Straight-line order on the local projection and great-circle ETAs can disagree by a fraction of
# a percent; a left-off driver's cost is bounded below with this margin.
_ORDER_MARGIN = 0.99
# For the same reason a list whose farthest driver is this far beyond the radius holds every
# driver within it.
_BEYOND_RADIUS = 1.02
_UNMATCHED_COST = 1e9


@dataclass(frozen=True)
class RequestBatch:
    ride_ids: list[str]
    lat: FloatArray
    lng: FloatArray
    waited_s: FloatArray
    excluded: list[frozenset[str]]


@dataclass(frozen=True)
class DriverSnapshot:
    driver_ids: list[str]
    lat: FloatArray
    lng: FloatArray
    idle_s: FloatArray
    earned_cents: FloatArray


@dataclass(frozen=True)
class MatchingSettings:
    """`radius_schedule_m` holds (waited_s at least, radius_m) steps.

    `fairness_weight` is the pickup seconds a rider gives up per dollar a driver has earned today
    above the lowest-earning driver in the batch; 0 means pure pickup ETA.

    `wait_priority` is the pickup seconds a request is favoured by per second it has waited longer
    than the youngest request of the batch. It only decides *which* requests are served when not
    all can be (every matched request pays its own constant otherwise), so that riders about to
    give up go first; 0 leaves the choice to pickup ETA alone.
    """

    radius_schedule_m: tuple[tuple[float, float], ...] = (
        (0.0, 3000.0),
        (20.0, 6000.0),
        (40.0, 10000.0),
    )
    max_pickup_eta_s: int = 1800
    fairness_weight: float = 0.0
    solver_time_limit_s: float = 1.0
    wait_priority: float = 0.0


class Assignment(NamedTuple):
    ride_id: str
    driver_id: str
    eta_s: int


@dataclass(frozen=True)
class BatchPlan:
    assignments: list[Assignment]
    candidate_edges: int
    solve_ms: float


@dataclass(frozen=True)
class _Edges:
    request: IntArray
    driver: IntArray
    eta_s: IntArray
    rank: IntArray  # position of the driver in the request's nearest-first list


@dataclass(frozen=True)
class _SearchResult:
    edges: _Edges
    exhausted: npt.NDArray[np.bool_]  # every allowed driver of the request is listed
    left_off_eta_s: FloatArray  # no left-off driver is nearer than this (in seconds)


def plan_batch(
    requests: RequestBatch, drivers: DriverSnapshot, eta: EtaModel, settings: MatchingSettings
) -> BatchPlan:
    """Match as many requests as possible, then minimise total integer cost.

    Cost of a pair is its pickup ETA in seconds plus, when `fairness_weight` > 0, the driver's
    fairness term. A driver gets at most one request, never one that excluded them, and only
    within the radius the request's wait allows and the pickup ETA cap.
    """
    started = perf_counter()
    n_requests, n_drivers = len(requests.ride_ids), len(drivers.driver_ids)
    if n_requests == 0 or n_drivers == 0:
        return BatchPlan([], 0, (perf_counter() - started) * 1000)

    index = PlanarIndex(drivers.lat, drivers.lng)
    radius_m = radius_for_wait(requests.waited_s, settings.radius_schedule_m)
    excluded = _exclusions(requests.excluded, drivers.driver_ids)
    fairness_s = _fairness_seconds(drivers.earned_cents, settings.fairness_weight)
    younger_s = _younger_seconds(requests.waited_s, settings.wait_priority)

    # When requests outnumber drivers most requests stay unmatched and need every driver they can
    # reach, so lists start longer in proportion.
    initial_list = max(INITIAL_CANDIDATES_PER_REQUEST, -(-4 * n_requests // n_drivers))
    list_size = np.full(n_requests, initial_list, dtype=np.int64)
    to_search = np.flatnonzero(radius_m > 0)
    exhausted = radius_m <= 0  # cannot search yet: nothing to widen
    left_off_eta_s = np.zeros(n_requests, dtype=np.float64)
    edges = _Edges(*(np.zeros(0, np.int64) for _ in range(4)))
    chosen = np.zeros(0, dtype=np.bool_)

    duals: Duals | None = None
    for round_number in range(MAX_WIDENING_ROUNDS):
        search = _search(
            to_search, list_size, requests, drivers, index, radius_m, excluded, eta, settings
        )
        exhausted[to_search] = search.exhausted
        left_off_eta_s[to_search] = search.left_off_eta_s
        found = search.edges
        # Widened requests get their longer list in place of the old one, which it contains;
        # their current pairs carry over.
        widened = np.zeros(n_requests, dtype=np.bool_)
        widened[to_search] = True
        keep = ~widened[edges.request]
        held = chosen & ~keep
        held_requests = edges.request[held]
        found_chosen = np.isin(
            found.request * n_drivers + found.driver,
            held_requests * n_drivers + edges.driver[held],
        )
        edges = _Edges(
            *(
                np.concatenate([old[keep], new])
                for old, new in zip(
                    (edges.request, edges.driver, edges.eta_s, edges.rank),
                    (found.request, found.driver, found.eta_s, found.rank),
                    strict=True,
                )
            )
        )
        chosen = np.concatenate([chosen[keep], found_chosen])
        cost = edges.eta_s + fairness_s[edges.driver] + younger_s[edges.request]

        # A new edge can only improve the plan if its reduced cost under the last duals is
        # negative; otherwise the plan and its duals stand as they are.
        if duals is None:
            improved = np.unique(found.request)
        else:
            found_cost = cost[len(cost) - len(found.request) :]
            reduced = found_cost - duals.request[found.request] + duals.driver[found.driver]
            # A held pair missing from the longer list (a tie at its end) must be re-planned too.
            replan = np.zeros(n_requests, dtype=np.bool_)
            replan[held_requests] = True
            replan[found.request[found_chosen]] = False
            replan[found.request[reduced < 0]] = True
            improved = np.flatnonzero(replan)
        if len(improved):
            chosen, duals = _replan(
                edges, chosen, cost, improved, n_requests, n_drivers, round_number == 0
            )

        # A left-off driver costs at least its ETA plus the request's own wait-priority term.
        left_off_cost = left_off_eta_s + younger_s
        to_search = _requests_to_widen(edges, chosen, exhausted, left_off_cost, list_size, duals)
        if len(to_search) == 0 or perf_counter() - started > settings.solver_time_limit_s:
            break
        # An unmatched request's list grows faster: its match may hinge on any driver it reaches.
        unmatched = np.ones(n_requests, dtype=np.bool_)
        unmatched[edges.request[chosen]] = False
        list_size[to_search] *= np.where(unmatched[to_search], 4, 2)

    assignments = [
        Assignment(requests.ride_ids[r], drivers.driver_ids[d], int(t))
        for r, d, t in zip(
            edges.request[chosen].tolist(),
            edges.driver[chosen].tolist(),
            edges.eta_s[chosen].tolist(),
            strict=True,
        )
    ]
    return BatchPlan(assignments, len(edges.request), (perf_counter() - started) * 1000)


def _replan(
    edges: _Edges,
    carried: npt.NDArray[np.bool_],
    cost: IntArray,
    changed_requests: IntArray,
    n_requests: int,
    n_drivers: int,
    first_round: bool,
) -> tuple[npt.NDArray[np.bool_], Duals | None]:
    """The optimal plan after `changed_requests` gained edges, with its duals.

    First the changed requests and the requests a few hops around them are re-planned on their
    own; the duals of the result certify it optimal for the whole batch or else the connected
    components of the changed requests are re-solved whole.
    """
    if first_round:
        chosen = assign_max_matching_min_cost(
            edges.request, edges.driver, cost, n_requests, n_drivers
        ).edge_used
        return chosen, _duals(edges, cost, chosen, n_requests, n_drivers)
    released, usable = _neighbourhood(edges, carried, changed_requests, n_requests, n_drivers)
    chosen = _reassign(edges, carried, cost, released, usable, n_requests, n_drivers)
    duals = _duals(edges, cost, chosen, n_requests, n_drivers, give_up_on_free_driver=True)
    if duals is not None and _certifies_optimal(duals, edges, chosen):
        return chosen, duals
    resolve = _changed_components(edges, changed_requests, n_requests, n_drivers)
    chosen = _reassign(edges, carried, cost, resolve, resolve, n_requests, n_drivers)
    return chosen, _duals(edges, cost, chosen, n_requests, n_drivers)


def _duals(
    edges: _Edges,
    cost: IntArray,
    chosen: npt.NDArray[np.bool_],
    n_requests: int,
    n_drivers: int,
    give_up_on_free_driver: bool = False,
) -> Duals | None:
    return minimal_request_duals(
        edges.request,
        edges.driver,
        cost,
        chosen,
        n_requests,
        n_drivers,
        _UNMATCHED_COST,
        give_up_on_free_driver,
    )


def _certifies_optimal(duals: Duals, edges: _Edges, chosen: npt.NDArray[np.bool_]) -> bool:
    """Duals that settled prove the plan optimal when no free driver has a price (nobody would
    rather have them) and no request's dual exceeds the cost of leaving it unmatched."""
    held = np.zeros(len(duals.driver), dtype=np.bool_)
    held[edges.driver[chosen]] = True
    return not (duals.driver[~held] > 0).any() and not (duals.request > _UNMATCHED_COST).any()


def _neighbourhood(
    edges: _Edges,
    carried: npt.NDArray[np.bool_],
    changed_requests: IntArray,
    n_requests: int,
    n_drivers: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(released, usable) edges for re-planning the changed requests and every request that
    lists a driver they list (and so on, a few hops), over the drivers that are free or held
    inside that neighbourhood."""
    holder = np.full(n_drivers, -1, dtype=np.int64)
    holder[edges.driver[carried]] = edges.request[carried]
    inside = np.zeros(n_requests, dtype=np.bool_)
    inside[changed_requests] = True
    for _ in range(_NEIGHBOURHOOD_HOPS):
        reachable = np.zeros(n_drivers, dtype=np.bool_)
        reachable[edges.driver[inside[edges.request]]] = True
        inside[edges.request[reachable[edges.driver]]] = True
    driver_holder = holder[edges.driver]
    released = inside[edges.request]
    usable = released & ((driver_holder < 0) | inside[np.maximum(driver_holder, 0)])
    return released, usable


def _changed_components(
    edges: _Edges, changed_requests: IntArray, n_requests: int, n_drivers: int
) -> npt.NDArray[np.bool_]:
    """The edges of the connected components that contain one of `changed_requests`.

    A component without one keeps the optimum it had last round (the assignment problem splits
    over components).
    """
    n_nodes = n_requests + n_drivers
    graph = coo_matrix(
        (np.ones(len(edges.request)), (edges.request, n_requests + edges.driver)),
        shape=(n_nodes, n_nodes),
    )
    _, component = connected_components(graph, directed=False)
    changed = np.zeros(component.max() + 1, dtype=np.bool_)
    changed[component[changed_requests]] = True
    return np.asarray(changed[component[edges.request]], dtype=np.bool_)


def _reassign(
    edges: _Edges,
    carried: npt.NDArray[np.bool_],
    cost: IntArray,
    released: npt.NDArray[np.bool_],
    usable: npt.NDArray[np.bool_],
    n_requests: int,
    n_drivers: int,
) -> npt.NDArray[np.bool_]:
    """The carried plan with the pairs on `released` edges replaced by the optimum over `usable`."""
    chosen = carried & ~released
    chosen[usable] = assign_max_matching_min_cost(
        edges.request[usable], edges.driver[usable], cost[usable], n_requests, n_drivers
    ).edge_used
    return np.asarray(chosen, dtype=np.bool_)


def _requests_to_widen(
    edges: _Edges,
    chosen: npt.NDArray[np.bool_],
    exhausted: npt.NDArray[np.bool_],
    left_off_cost: FloatArray,
    list_size: IntArray,
    duals: Duals | None,
) -> IntArray:
    n_requests = len(exhausted)
    if duals is not None:
        return np.flatnonzero(~exhausted & (duals.request > left_off_cost))
    # The prices did not settle: widen whoever is unmatched or near the end of their list.
    matched = np.zeros(n_requests, dtype=np.bool_)
    matched[edges.request[chosen]] = True
    near_end_of_list = np.zeros(n_requests, dtype=np.bool_)
    near_end_of_list[edges.request[chosen]] = (
        edges.rank[chosen] >= list_size[edges.request[chosen]] // 2
    )
    return np.flatnonzero(~exhausted & (~matched | near_end_of_list))


def _search(
    request_indices: IntArray,
    list_size: IntArray,
    requests: RequestBatch,
    drivers: DriverSnapshot,
    index: PlanarIndex,
    radius_m: FloatArray,
    excluded: _Exclusions,
    eta: EtaModel,
    settings: MatchingSettings,
) -> _SearchResult:
    """Candidate edges for the given requests, whether each list is complete, and a lower bound
    on the pickup ETA of any driver left off each list."""
    query_size = list_size[request_indices] + excluded.per_request[request_indices]
    # One tree query per list size, out to the group's widest radius; each request's own radius
    # is applied to the pairs afterwards.
    sizes, group_of = np.unique(query_size, return_inverse=True)
    parts: list[tuple[IntArray, IntArray, IntArray]] = []
    exhausted = np.zeros(len(request_indices), dtype=np.bool_)
    for g, size in enumerate(sizes.tolist()):
        positions = np.flatnonzero(group_of == g)
        members = request_indices[positions]
        point_of, driver_of = index.nearest_within(
            requests.lat[members], requests.lng[members], float(radius_m[members].max()), size
        )
        found_per_point = np.bincount(point_of, minlength=len(members))
        exhausted[positions] = (found_per_point < size) | (size >= index.size)
        starts = np.concatenate([[0], np.cumsum(found_per_point)[:-1]])
        rank = np.arange(len(point_of)) - starts[point_of]
        parts.append((members[point_of], driver_of, rank))

    if not parts:
        nothing = np.zeros(0, dtype=np.int64)
        return _SearchResult(
            _Edges(nothing, nothing, nothing, nothing),
            np.ones(len(request_indices), dtype=np.bool_),
            np.zeros(len(request_indices), dtype=np.float64),
        )
    request_of = np.concatenate([p[0] for p in parts])
    driver_of = np.concatenate([p[1] for p in parts])
    rank = np.concatenate([p[2] for p in parts])

    distance_m = haversine_m(
        requests.lat[request_of],
        requests.lng[request_of],
        drivers.lat[driver_of],
        drivers.lng[driver_of],
    )
    eta_s = np.rint(
        eta.seconds(
            drivers.lat[driver_of],
            drivers.lng[driver_of],
            requests.lat[request_of],
            requests.lng[request_of],
        )
    ).astype(np.int64)
    allowed = (distance_m <= radius_m[request_of]) & (eta_s <= settings.max_pickup_eta_s)
    allowed &= ~excluded.blocks(request_of, driver_of)
    left_off_eta_s = np.zeros(len(request_indices), dtype=np.float64)
    if len(request_of):
        # Drivers left off a list are no nearer than its farthest one. A request whose left-off
        # drivers are all beyond the ETA cap or its radius cannot usefully widen.
        last_of_run = np.flatnonzero(np.append(request_of[1:] != request_of[:-1], True))
        last_listed_of = np.searchsorted(request_indices, request_of[last_of_run])
        left_off_eta_s[last_listed_of] = _eta_at_least(
            eta, distance_m[last_of_run], eta_s[last_of_run]
        )
        exhausted[last_listed_of] |= left_off_eta_s[last_listed_of] > settings.max_pickup_eta_s
        exhausted[last_listed_of] |= (
            distance_m[last_of_run] > radius_m[request_of[last_of_run]] * _BEYOND_RADIUS
        )

    return _SearchResult(
        _Edges(request_of[allowed], driver_of[allowed], eta_s[allowed], rank[allowed]),
        exhausted,
        left_off_eta_s,
    )


@dataclass(frozen=True)
class _Exclusions:
    per_request: IntArray  # how many drivers each request excludes
    pair_keys: IntArray  # request * n_drivers + driver, for every excluded pair
    n_drivers: int

    def blocks(self, request_of: IntArray, driver_of: IntArray) -> npt.NDArray[np.bool_]:
        blocked = np.zeros(len(request_of), dtype=np.bool_)
        if len(self.pair_keys) == 0:
            return blocked
        # Few requests exclude anyone: only their pairs are looked up.
        check = np.flatnonzero(self.per_request[request_of] > 0)
        blocked[check] = np.isin(
            request_of[check] * self.n_drivers + driver_of[check], self.pair_keys
        )
        return blocked


def _exclusions(excluded: Sequence[frozenset[str]], driver_ids: Sequence[str]) -> _Exclusions:
    n_drivers = len(driver_ids)
    per_request = np.zeros(len(excluded), dtype=np.int64)
    wanted = frozenset().union(*excluded)
    if not wanted:
        return _Exclusions(per_request, np.zeros(0, np.int64), n_drivers)
    position = {d: i for i, d in enumerate(driver_ids) if d in wanted}
    keys = [
        r * n_drivers + position[d] for r, ids in enumerate(excluded) for d in ids if d in position
    ]
    np.add.at(per_request, np.array(keys, np.int64) // n_drivers, 1)
    return _Exclusions(per_request, np.array(sorted(keys), np.int64), n_drivers)


def _eta_at_least(eta: EtaModel, farthest_m: FloatArray, farthest_eta_s: IntArray) -> FloatArray:
    """A lower bound on the ETA of any driver farther than the farthest listed one.

    A model that promises a fastest pace (`min_seconds_per_metre`, seconds per metre of great-
    circle distance) gives a true bound. Otherwise the ETA is assumed to grow with distance, as
    the straight-line model's does, and the farthest listed driver's ETA is the bound.
    """
    pace = getattr(eta, "min_seconds_per_metre", None)
    if pace is not None:
        return np.asarray(farthest_m * float(pace) * _ORDER_MARGIN, dtype=np.float64)
    return np.asarray(farthest_eta_s * _ORDER_MARGIN, dtype=np.float64)


def _younger_seconds(waited_s: FloatArray, weight: float) -> IntArray:
    if weight <= 0 or len(waited_s) == 0:
        return np.zeros(len(waited_s), dtype=np.int64)
    return np.asarray(np.rint(weight * (waited_s.max() - waited_s)), dtype=np.int64)


def _fairness_seconds(earned_cents: FloatArray, weight: float) -> IntArray:
    if weight <= 0 or len(earned_cents) == 0:
        return np.zeros(len(earned_cents), dtype=np.int64)
    above_lowest_dollars = (earned_cents - earned_cents.min()) / 100.0
    return np.asarray(np.rint(weight * above_lowest_dollars), dtype=np.int64)
