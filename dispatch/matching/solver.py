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
