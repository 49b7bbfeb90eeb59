"""Maximum-cardinality, minimum-cost bipartite assignment on a sparse edge list (OR-Tools)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from ortools.graph.python import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

IntArray = npt.NDArray[np.int64]

_Status = linear_sum_assignment.SimpleLinearSumAssignment.Status


class SolverError(RuntimeError):
    """OR-Tools returned a status other than OPTIMAL."""


@dataclass(frozen=True)
class SparseAssignment:
    """`edge_used[e]` is True when edge e (request_of[e] -> driver_of[e]) is in the assignment."""

    edge_used: npt.NDArray[np.bool_]
    total_cost: int


def assign_max_matching_min_cost(
    request_of: IntArray, driver_of: IntArray, cost: IntArray, n_requests: int, n_drivers: int
) -> SparseAssignment:
    """Match as many requests as possible, then minimise the summed integer cost.

    Each request and each driver is used at most once. Solved exactly with OR-Tools' cost-scaling
    linear sum assignment on the doubled graph that turns "at most one" into "exactly one":

    - left nodes: requests, then one stand-in per driver; right nodes: drivers, then one stand-in
      per request;
    - request -> driver at the pair's cost; request -> its own stand-in at an unmatched cost;
      driver stand-in -> its driver at 0 (the driver stays free); driver stand-in -> the stand-in
      of every request the driver could serve, at 0 (mirroring the real pairs, so a perfect
      assignment always exists).

    An unmatched cost above what any augmenting path (at most min(requests, drivers) + 1 pairs)
    can add makes one more match always win over any saving in cost, but such large costs slow the
    solver down. So the solve first uses 2 * max cost + 1, which already makes every augmenting
    path of up to two pairs worth taking, and keeps that answer when it matches every request or
    as many as a maximum matching (Hopcroft-Karp) does: among maximum matchings it then has least
    cost.
    """
    n_edges = len(cost)
    if n_edges == 0:
        return SparseAssignment(np.zeros(0, dtype=np.bool_), 0)
    if int(cost.min()) < 0:
        raise ValueError("assignment costs must be non-negative")

    # Number only the nodes that have edges: the solver's work grows with the node count.
    request_nodes, request_node_of = np.unique(request_of, return_inverse=True)
    n_left = len(request_nodes)
    # A driver only one request lists is that request's to take: it leaves the graph and its
    # cheapest such driver becomes the request's cost of staying off the shared drivers.
    private = np.bincount(driver_of, minlength=n_drivers)[driver_of] == 1
    fallback = _cheapest_per_request(np.flatnonzero(private), request_node_of, cost, n_left)
    has_fallback = fallback >= 0
    shared = np.flatnonzero(~private)
    driver_nodes, driver_node_of = np.unique(driver_of[shared], return_inverse=True)
    graph = _NodeGraph(request_node_of[shared], driver_node_of, n_left, len(driver_nodes))
    shared_cost = cost[shared]
    largest = int(cost.max())

    def solve(unmatched_cost: int) -> npt.NDArray[np.bool_]:
        stay_cost = np.where(has_fallback, cost[np.maximum(fallback, 0)], unmatched_cost)
        return _solve_doubled(graph, shared_cost, stay_cost)

    shared_used = solve(2 * largest + 1)
    on_shared = np.zeros(n_left, dtype=np.bool_)
    on_shared[graph.left_of[shared_used]] = True
    matched = int((on_shared | has_fallback).sum())
    if matched < n_left and matched < _maximum_matching_size(request_node_of, driver_of):
        shared_used = solve((largest + 1) * (n_left + 1))
        on_shared[:] = False
        on_shared[graph.left_of[shared_used]] = True

    edge_used = np.zeros(n_edges, dtype=np.bool_)
    edge_used[shared[shared_used]] = True
    edge_used[fallback[has_fallback & ~on_shared]] = True
    return SparseAssignment(edge_used, int(cost[edge_used].sum()))


def _cheapest_per_request(
    edges: IntArray, request_node_of: IntArray, cost: IntArray, n_left: int
) -> IntArray:
    """For each request node, its cheapest edge among `edges`, or -1."""
    cheapest = np.full(n_left, -1, dtype=np.int64)
    if len(edges) == 0:
        return cheapest
    order = edges[np.lexsort((cost[edges], request_node_of[edges]))]
    requests = request_node_of[order]
    first = order[np.append(True, requests[1:] != requests[:-1])]
    cheapest[request_node_of[first]] = first
    return cheapest


@dataclass(frozen=True)
class _NodeGraph:
    left_of: IntArray  # compact request node of each edge
    right_of: IntArray  # compact driver node of each edge
    n_left: int
    n_right: int


def _maximum_matching_size(request_node_of: IntArray, driver_of: IntArray) -> int:
    _, driver_node_of = np.unique(driver_of, return_inverse=True)
    adjacency = csr_matrix(
        (np.ones(len(driver_of), np.int8), (request_node_of, driver_node_of)),
        shape=(int(request_node_of.max()) + 1, int(driver_node_of.max()) + 1),
    )
    mate = maximum_bipartite_matching(adjacency, perm_type="column")
    return int((mate >= 0).sum())


def _solve_doubled(graph: _NodeGraph, cost: IntArray, stay_cost: IntArray) -> npt.NDArray[np.bool_]:
    """Which edges the optimal assignment uses, where each request may instead stay off the
    graph's drivers at its `stay_cost`."""
    n_left, n_right, n_edges = graph.n_left, graph.n_right, len(cost)
    left = np.concatenate(
        [graph.left_of, np.arange(n_left), n_left + np.arange(n_right), n_left + graph.right_of]
    )
    right = np.concatenate(
        [graph.right_of, n_right + np.arange(n_left), np.arange(n_right), n_right + graph.left_of]
    )
    arc_cost = np.concatenate(
        [
            cost,
            stay_cost.astype(np.int64),
            np.zeros(n_right, np.int64),
            np.zeros(n_edges, np.int64),
        ]
    )
    solver = linear_sum_assignment.SimpleLinearSumAssignment()
    solver.add_arcs_with_cost(left.astype(np.int32), right.astype(np.int32), arc_cost)

    status = solver.solve()
    if status == _Status.INFEASIBLE:
        raise SolverError("assignment reported INFEASIBLE although a perfect assignment exists")
    if status == _Status.POSSIBLE_OVERFLOW:
        raise SolverError("assignment costs too large for the solver (POSSIBLE_OVERFLOW)")
    if status != _Status.OPTIMAL:
        raise SolverError(f"assignment returned {status.name}")

    mate = np.fromiter(map(solver.right_mate, range(n_left)), np.int64, n_left)
    return np.asarray(mate[graph.left_of] == graph.right_of, dtype=np.bool_)


@dataclass(frozen=True)
class Duals:
    """LP duals of an optimal assignment: `request[r]` (u) and driver prices `driver[d]` (p)."""

    request: npt.NDArray[np.float64]
    driver: npt.NDArray[np.float64]


def minimal_request_duals(
    request_of: IntArray,
    driver_of: IntArray,
    cost: IntArray,
    edge_used: npt.NDArray[np.bool_],
    n_requests: int,
    n_drivers: int,
    unmatched_cost: float,
    give_up_on_free_driver: bool = False,
) -> Duals | None:
    """The smallest LP dual `u` per request that proves an assignment optimal on its edges.

    With driver prices p >= 0, `u[r] = cost(r, its driver) + p[its driver]` (or `unmatched_cost`
    for an unmatched request), and every unused edge must satisfy `u[r] - p[d] <= cost(r, d)`.
    Prices start at zero and rise to the least fixpoint (a longest-path relaxation that converges
    when the assignment is optimal). Any pair (r, d) *left out* of the edge list with
    `cost(r, d) >= u[r]` could not improve the assignment, which lets the caller certify a sparse
    candidate list against the full one.

    Returns None if the prices do not settle within the longest alternating path (one round per
    request, and so never for an optimal assignment), or, with `give_up_on_free_driver`, as soon
    as a free driver is priced, which already shows the assignment is not optimal.
    """
    owner_driver = np.full(n_requests, -1, dtype=np.int64)
    assigned_cost = np.full(n_requests, unmatched_cost, dtype=np.float64)
    owner_driver[request_of[edge_used]] = driver_of[edge_used]
    assigned_cost[request_of[edge_used]] = cost[edge_used]
    matched = owner_driver >= 0

    # Unused edges grouped by request: when a request's dual rises, only its bids change.
    unused = np.flatnonzero(~edge_used)
    by_request = unused[np.argsort(request_of[unused], kind="stable")]
    bid_request = request_of[by_request]
    bid_driver = driver_of[by_request]
    bid_cost = cost[by_request].astype(np.float64)
    first_bid = np.searchsorted(bid_request, np.arange(n_requests + 1))
    owner_request = np.full(n_drivers, -1, dtype=np.int64)
    owner_request[owner_driver[matched]] = np.flatnonzero(matched)

    # Prices only rise from zero to the least fixpoint, so each round re-bids only for the
    # requests whose dual rose in the round before (a worklist Bellman-Ford).
    price = np.zeros(n_drivers, dtype=np.float64)
    dual = assigned_cost.copy()
    bidders = np.flatnonzero(first_bid[1:] > first_bid[:-1])
    for _ in range(n_requests + 2):
        if len(bidders) == 0:
            return Duals(dual, price)
        edges = _ranges(first_bid[bidders], first_bid[bidders + 1])
        bid = dual[bid_request[edges]] - bid_cost[edges]
        target = bid_driver[edges]
        raised = bid > price[target]
        if not raised.any():
            return Duals(dual, price)
        target, bid = target[raised], bid[raised]
        np.maximum.at(price, target, bid)
        raised_drivers = np.unique(target)
        raised_owners = owner_request[raised_drivers]
        has_owner = raised_owners >= 0
        if give_up_on_free_driver and not has_owner.all():
            return None
        raised_owners = raised_owners[has_owner]
        dual[raised_owners] = assigned_cost[raised_owners] + price[raised_drivers[has_owner]]
        bidders = raised_owners[first_bid[raised_owners + 1] > first_bid[raised_owners]]
    return None


def _ranges(starts: IntArray, stops: IntArray) -> IntArray:
    """The concatenation of arange(start, stop) for each pair."""
    lengths = stops - starts
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.asarray(np.arange(int(lengths.sum()), dtype=np.int64) + offsets, dtype=np.int64)
