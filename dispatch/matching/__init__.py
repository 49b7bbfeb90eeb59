"""Batched matching of ride requests to drivers: candidates, ETAs, an exact OR-Tools solve."""

from dispatch.matching.batch import (
    Assignment,
    BatchPlan,
    DriverSnapshot,
    MatchingSettings,
    RequestBatch,
    plan_batch,
)
from dispatch.matching.eta import EtaModel, StraightLineEta, TripEstimate, haversine_m
from dispatch.matching.solver import SolverError

__all__ = [
    "Assignment",
    "BatchPlan",
    "DriverSnapshot",
    "EtaModel",
    "MatchingSettings",
    "RequestBatch",
    "SolverError",
    "StraightLineEta",
    "TripEstimate",
    "haversine_m",
    "plan_batch",
]
