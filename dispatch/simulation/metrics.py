"""What a co-op reads off a simulation run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from dispatch.matching.eta import FloatArray
from dispatch.simulation.engine import SimulationResult


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    requests: int
    served_pct: float
    wait_mean_s: float
    wait_p50_s: float
    wait_p95_s: float
    utilisation_pct: float
    empty_km_per_ride: float
    earnings_gini: float
    lowest_decile_share_pct: float
    batches: int
    solve_p50_ms: float
    solve_p95_ms: float
    solve_max_ms: float
    batch_requests_mean: float
    batch_requests_max: int
    batch_drivers_max: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def as_json(self) -> dict[str, float | int | str | None]:
        """For JSON: a number that does not exist (a greedy policy solves no batch; nobody
        waited) is null, not NaN."""
        return {
            name: None if isinstance(value, float) and not math.isfinite(value) else value
            for name, value in self.as_dict().items()
        }


def gini(values: FloatArray) -> float:
    """0 when everyone has the same, towards 1 when one has everything."""
    if len(values) == 0 or values.sum() <= 0:
        return 0.0
    ordered = np.sort(values)
    n = len(ordered)
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * ordered).sum()) / (n * ordered.sum()) - (n + 1) / n)


def lowest_decile_share(values: FloatArray) -> float:
    """Share of the total held by the lowest-earning tenth (rounded up) of drivers."""
    if len(values) == 0 or values.sum() <= 0:
        return 0.0
    tenth = max(1, int(np.ceil(len(values) / 10)))
    return float(np.sort(values)[:tenth].sum() / values.sum())


def summarize(result: SimulationResult) -> PolicySummary:
    served = result.served
    waits = result.pickup_wait_s[served]
    solve = np.array(result.batch_solve_ms) if result.batch_solve_ms else np.array([np.nan])

    def pct(values: FloatArray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return PolicySummary(
        policy=result.policy.name,
        requests=len(served),
        served_pct=100.0 * float(served.mean()) if len(served) else 0.0,
        wait_mean_s=float(waits.mean()) if len(waits) else float("nan"),
        wait_p50_s=pct(waits, 50),
        wait_p95_s=pct(waits, 95),
        utilisation_pct=100.0
        * float(result.driver_busy_s.sum() / (len(result.driver_busy_s) * result.horizon_s)),
        empty_km_per_ride=float(result.pickup_m[served].sum() / 1000 / max(1, int(served.sum()))),
        earnings_gini=gini(result.driver_earned_cents),
        lowest_decile_share_pct=100.0 * lowest_decile_share(result.driver_earned_cents),
        batches=len(result.batch_solve_ms),
        solve_p50_ms=pct(solve, 50),
        solve_p95_ms=pct(solve, 95),
        solve_max_ms=float(solve.max()),
        batch_requests_mean=float(np.mean(result.batch_requests)) if result.batch_requests else 0.0,
        batch_requests_max=max(result.batch_requests, default=0),
        batch_drivers_max=max(result.batch_drivers, default=0),
    )
