"""Maximum-cardinality, minimum-cost bipartite assignment on a sparse edge list (OR-Tools)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from ortools.graph.python import min_cost_flow

IntArray = npt.NDArray[np.int64]

_Status = min_cost_flow.SimpleMinCostFlow.Status


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

    Each request and each driver is used at most once. Solved exactly as a max-flow with minimum
    cost: source -> request -> driver -> sink, every arc of capacity one.
    """
    n_edges = len(cost)
    if n_edges == 0:
        return SparseAssignment(np.zeros(0, dtype=np.bool_), 0)
    if int(cost.min()) < 0:
        raise ValueError("assignment costs must be non-negative")

    source = n_requests + n_drivers
    sink = source + 1
    request_nodes = np.unique(request_of)
    driver_nodes = np.unique(driver_of)
    tails = np.concatenate(
        [np.full(len(request_nodes), source), request_of, n_requests + driver_nodes]
    )
    heads = np.concatenate(
        [request_nodes, n_requests + driver_of, np.full(len(driver_nodes), sink)]
    )
    costs = np.concatenate(
        [np.zeros(len(request_nodes), np.int64), cost, np.zeros(len(driver_nodes), np.int64)]
    )
    flow_network = min_cost_flow.SimpleMinCostFlow()
    arcs = flow_network.add_arcs_with_capacity_and_unit_cost(
        tails.astype(np.int32),
        heads.astype(np.int32),
        np.ones(len(tails), np.int64),
        costs.astype(np.int64),
    )
    flow_network.set_node_supply(source, len(request_nodes))
    flow_network.set_node_supply(sink, -len(request_nodes))

    status = flow_network.solve_max_flow_with_min_cost()
    if status != _Status.OPTIMAL:
        # FEASIBLE, INFEASIBLE, UNBALANCED, BAD_RESULT, BAD_COST_RANGE, BAD_CAPACITY_RANGE and
        # NOT_SOLVED all mean the answer cannot be trusted as the optimum.
        raise SolverError(f"min-cost flow returned {status.name}")

    edge_arcs = arcs[len(request_nodes) : len(request_nodes) + n_edges]
    edge_used = flow_network.flows(edge_arcs) > 0
    return SparseAssignment(edge_used, int(cost[edge_used].sum()))


def minimal_request_duals(
    request_of: IntArray,
    driver_of: IntArray,
    cost: IntArray,
    edge_used: npt.NDArray[np.bool_],
    n_requests: int,
    n_drivers: int,
    unmatched_cost: float,
    max_rounds: int = 200,
) -> npt.NDArray[np.float64] | None:
    """The smallest LP dual `u` per request that proves an assignment optimal on its edges.

    With driver prices p >= 0, `u[r] = cost(r, its driver) + p[its driver]` (or `unmatched_cost`
    for an unmatched request), and every unused edge must satisfy `u[r] - p[d] <= cost(r, d)`.
    Prices start at zero and rise to the least fixpoint (a longest-path relaxation that converges
    when the assignment is optimal). Any pair (r, d) *left out* of the edge list with
    `cost(r, d) >= u[r]` could not improve the assignment, which lets the caller certify a sparse
    candidate list against the full one. Returns None if the prices have not settled in time.
    """
    owner_driver = np.full(n_requests, -1, dtype=np.int64)
    assigned_cost = np.full(n_requests, unmatched_cost, dtype=np.float64)
    owner_driver[request_of[edge_used]] = driver_of[edge_used]
    assigned_cost[request_of[edge_used]] = cost[edge_used]
    matched = owner_driver >= 0
    owner_driver_or_zero = np.where(matched, owner_driver, 0)

    unused = ~edge_used
    by_driver = np.argsort(driver_of[unused], kind="stable")
    bid_request = request_of[unused][by_driver]
    bid_driver = driver_of[unused][by_driver]
    bid_cost = cost[unused][by_driver].astype(np.float64)
    if len(bid_driver) == 0:
        return assigned_cost
    segment_start = np.flatnonzero(np.append(True, bid_driver[1:] != bid_driver[:-1]))
    segment_driver = bid_driver[segment_start]

    price = np.zeros(n_drivers, dtype=np.float64)
    for _ in range(max_rounds):
        dual = assigned_cost + np.where(matched, price[owner_driver_or_zero], 0.0)
        best_bid = np.maximum.reduceat(dual[bid_request] - bid_cost, segment_start)
        new_price = np.zeros(n_drivers, dtype=np.float64)
        new_price[segment_driver] = np.maximum(best_bid, 0.0)
        if np.array_equal(new_price, price):
            return dual
        price = new_price
    return None
