"""A simulation scenario: the demand, the fleet and the settings every policy of a run shares, and
the policies by name (`coop-dispatch simulate`, the benchmark and the tests build runs here)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from dispatch.matching.batch import MatchingSettings
from dispatch.matching.eta import EtaModel, StraightLineEta
from dispatch.matching.road_graph import RoadGraphEta
from dispatch.simulation.demand import Demand, TripShapes, fleet_start, load_demand
from dispatch.simulation.engine import (
    BATCHED,
    GREEDY_NEAREST,
    GREEDY_OLDEST,
    Policy,
    SimulationConfig,
    batched_fair,
    batched_wait_priority,
    simulate,
)
from dispatch.simulation.metrics import PolicySummary, summarize

POLICY_NAMES = ("greedy-oldest", "greedy-nearest", "batched", "batched-fair", "batched-priority")


def policy_named(name: str, weight: float) -> Policy:
    """`weight` is the fairness weight of batched-fair and the wait priority of batched-priority."""
    fixed = {p.name: p for p in (GREEDY_OLDEST, GREEDY_NEAREST, BATCHED)}
    if name in fixed:
        return fixed[name]
    if name == "batched-fair":
        return batched_fair(weight)
    if name == "batched-priority":
        return batched_wait_priority(weight)
    raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs besides the policy: the same demand and fleet for every policy."""

    demand: Demand
    start_lat: np.ndarray
    start_lng: np.ndarray
    config: SimulationConfig


def build_scenario(
    trips: Path,
    start: datetime,
    end: datetime,
    fleet_size: int,
    seed: int,
    trip_shapes: Path | None = None,
    decline_share: float = 0.1,
    search_timeout_s: float = 300.0,
    batch_interval_s: float = 2.0,
    matching: MatchingSettings | None = None,
) -> Scenario:
    shapes = TripShapes.from_trip_file(trip_shapes) if trip_shapes else None
    demand = load_demand(trips, start, end, seed, shapes)
    start_lat, start_lng = fleet_start(demand, fleet_size, seed)
    config = SimulationConfig(
        fleet_size=fleet_size,
        seed=seed,
        decline_share=decline_share,
        search_timeout_s=search_timeout_s,
        batch_interval_s=batch_interval_s,
        matching=matching or MatchingSettings(),
    )
    return Scenario(demand, start_lat, start_lng, config)


def run_policy(
    scenario: Scenario, policy: Policy, eta: EtaModel, show_progress: bool = False
) -> PolicySummary:
    def progress(share: float) -> None:
        print(f"  {policy.name}: {share:4.0%} of simulated time", file=sys.stderr, flush=True)

    result = simulate(
        scenario.demand,
        scenario.start_lat,
        scenario.start_lng,
        policy,
        scenario.config,
        eta,
        progress if show_progress else None,
    )
    return summarize(result)


def make_eta(kind: str, road_graph: Path | None) -> EtaModel:
    if kind == "road":
        if road_graph is None:
            raise ValueError("--eta road needs --road-graph DIR")
        return RoadGraphEta(road_graph)
    return StraightLineEta()
