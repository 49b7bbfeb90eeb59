"""`python -m dispatch.simulation.bench [--quick]`: measure matching and write the report.

Writes `docs/benchmarks/matching.md` and its PNG plots: the batch cycle against the real local
Redis beside a dense optimal solve, per-request GEOSEARCH for contrast, and fleet simulations of the
2013 New Year's Eve taxi peak and a full day of April 2014 Uber pickups under every policy.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dispatch.core.settings import get_settings
from dispatch.matching.eta import EtaModel, StraightLineEta
from dispatch.matching.road_graph import RoadGraphEta
from dispatch.simulation import batch_cycle
from dispatch.simulation.datasets import DATA_DIR, ROAD_GRAPH_DIR, TAXI_FILE, UBER_FILE
from dispatch.simulation.engine import simulate
from dispatch.simulation.metrics import summarize
from dispatch.simulation.scenario import Scenario, build_scenario, policy_named

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "docs" / "benchmarks"
SURPLUS = "uber-day-more-seeds"

GREEDY_POLICIES = ("greedy-oldest", "greedy-nearest")
WEIGHTED_POLICIES = ("batched-fair", "batched-priority")
SERVED_TARGETS = (80.0, 90.0, 95.0)
# The wait priority tried beside pure-ETA batching at the taxi peak (see MatchingSettings).
WAIT_PRIORITY_OPTION = 0.1


@dataclass(frozen=True)
class BenchSettings:
    seeds: tuple[int, ...]
    cycle_sizes: tuple[tuple[int, int, int], ...]  # (requests, drivers, cycles per seed)
    dense_seeds: dict[tuple[int, int], tuple[int, ...]]  # (requests, drivers) -> seeds
    geosearch_drivers: tuple[int, ...]
    geosearch_requests: int
    taxi_window: tuple[datetime, datetime]
    calibration_fleets: tuple[int, ...]
    uber_window: tuple[datetime, datetime]
    uber_fleet: int
    surplus_seeds: tuple[int, ...]  # greedy-nearest vs batched in the quiet hours: a small effect
    fairness_weights: tuple[float, ...]
    workers: int


FULL = BenchSettings(
    seeds=(0, 1, 2, 3, 4),
    cycle_sizes=((500, 2500, 10), (1000, 5000, 10), (2000, 10000, 20), (5000, 50000, 6)),
    dense_seeds={(2000, 10000): (0, 1, 2, 3, 4), (5000, 50000): (0,)},
    geosearch_drivers=(10_000, 50_000, 100_000),
    geosearch_requests=500,
    taxi_window=(datetime(2013, 1, 1, 0, 0), datetime(2013, 1, 1, 0, 30)),
    calibration_fleets=(1400, 1700, 2000, 2200, 2400, 2700, 3000),
    uber_window=(datetime(2014, 4, 4), datetime(2014, 4, 5)),
    uber_fleet=400,
    surplus_seeds=tuple(range(20)),
    fairness_weights=(2.0, 4.0, 8.0),
    workers=2,
)

QUICK = BenchSettings(
    seeds=(0, 1),
    cycle_sizes=((500, 2500, 3), (2000, 10000, 5)),
    dense_seeds={(2000, 10000): (0,)},
    geosearch_drivers=(10_000, 100_000),
    geosearch_requests=300,
    taxi_window=(datetime(2013, 1, 1, 0, 10), datetime(2013, 1, 1, 0, 20)),
    calibration_fleets=(800, 1200, 1600, 2400),
    uber_window=(datetime(2014, 4, 4, 0), datetime(2014, 4, 4, 8)),
    uber_fleet=400,
    surplus_seeds=(0, 1, 2),
    fairness_weights=(1.0, 4.0),
    workers=2,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- simulation jobs (run in worker processes) -------------------------------------------------


@dataclass(frozen=True)
class SimJob:
    regime: str
    trips: str
    trip_shapes: str | None
    start: datetime
    end: datetime
    fleet: int
    seed: int
    policy: str
    fairness_weight: float
    eta: str  # "straight" or "road"
    road_graph: str
    keep_detail: bool


@cache
def _scenario(
    trips: str, trip_shapes: str | None, start: datetime, end: datetime, fleet: int, seed: int
) -> Scenario:
    return build_scenario(
        Path(trips), start, end, fleet, seed, Path(trip_shapes) if trip_shapes else None
    )


@cache
def _eta(kind: str, road_graph: str) -> EtaModel:
    return RoadGraphEta(road_graph) if kind == "road" else StraightLineEta()


def run_job(job: SimJob) -> dict[str, Any]:
    scenario = _scenario(job.trips, job.trip_shapes, job.start, job.end, job.fleet, job.seed)
    policy = policy_named(job.policy, job.fairness_weight)
    started = time.perf_counter()
    shadow = job.regime in ("uber-day", SURPLUS) and job.policy == "batched"
    result = simulate(
        scenario.demand,
        scenario.start_lat,
        scenario.start_lng,
        policy,
        replace(scenario.config, shadow_greedy=shadow),
        _eta(job.eta, job.road_graph),
    )
    row: dict[str, Any] = {"job": job, "summary": summarize(result).as_dict()}
    row["run_s"] = time.perf_counter() - started
    hour = (scenario.demand.request_s // 3600).astype(int)
    row["requests_per_hour"] = np.bincount(hour, minlength=hour.max() + 1).tolist()
    row["hour"] = hour
    row["pickup_eta_s"] = result.pickup_eta_s
    row["served"] = result.served
    if shadow:
        # Each request's first batch: the first offer each rule would make it.
        request = np.array(result.paired_request, dtype=np.int64)
        _, first = np.unique(request, return_index=True)
        row["paired"] = {
            "request": request[first],
            "batched_driver": np.array(result.paired_batched_driver)[first],
            "greedy_driver": np.array(result.paired_greedy_driver)[first],
            "batched_s": np.array(result.paired_batched_eta_s)[first],
            "greedy_s": np.array(result.paired_greedy_eta_s)[first],
        }
    if job.keep_detail:
        row["waits"] = result.pickup_wait_s[result.served]
        row["earnings"] = result.driver_earned_cents
        row["batch_requests"] = result.batch_requests
        row["batch_solve_ms"] = result.batch_solve_ms
    return row


def run_jobs(jobs: Sequence[SimJob], workers: int, label: str) -> list[dict[str, Any]]:
    log(f"{label}: {len(jobs)} simulation runs on {workers} processes")
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        for row in pool.imap_unordered(run_job, jobs):
            rows.append(row)
            job = row["job"]
            log(
                f"  {len(rows)}/{len(jobs)} {job.regime} {job.policy}"
                f"{f' w={job.fairness_weight:g}' if job.policy in WEIGHTED_POLICIES else ''}"
                f" seed {job.seed}: served {row['summary']['served_pct']:.1f}%, "
                f"wait {row['summary']['wait_mean_s']:.0f} s ({row['run_s']:.0f} s; "
                f"{time.perf_counter() - started:.0f} s elapsed)"
            )
    return rows


# ---- aggregation -------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return float(np.median(values))


def spread(values: Sequence[float], digits: int = 1) -> str:
    """'median [min–max]' over seeds."""
    return f"{med(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


@dataclass
class Regime:
    name: str
    description: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def by_policy(self, policy: str, weight: float = 0.0) -> list[dict[str, Any]]:
        return sorted(
            (
                r
                for r in self.rows
                if r["job"].policy == policy
                and (policy not in WEIGHTED_POLICIES or r["job"].fairness_weight == weight)
            ),
            key=lambda r: r["job"].seed,
        )

    def metric(self, policy: str, key: str, weight: float = 0.0) -> list[float]:
        return [float(r["summary"][key]) for r in self.by_policy(policy, weight)]


def policy_labels(regime: Regime) -> list[tuple[str, str, float]]:
    labels: list[tuple[str, str, float]] = []
    seen = set()
    for r in regime.rows:
        job = r["job"]
        weighted = job.policy in WEIGHTED_POLICIES
        key = (job.policy, job.fairness_weight if weighted else 0.0)
        if key not in seen:
            seen.add(key)
            name = f"{job.policy} w={key[1]:g}" if weighted else job.policy
            labels.append((name, key[0], key[1]))
    order = {
        "greedy-oldest": 0,
        "greedy-nearest": 1,
        "batched": 2,
        "batched-priority": 3,
        "batched-fair": 4,
    }
    return sorted(labels, key=lambda x: (order[x[1]], x[2]))


def policy_table(regime: Regime) -> list[str]:
    lines = [
        "| policy | served % | wait mean s | wait p50 s | wait p95 s | utilisation % "
        "| empty km / ride | earnings Gini | lowest decile % | solve p50 / p95 / max ms "
        "| batch requests mean / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, policy, weight in policy_labels(regime):

        def m(key: str, digits: int = 1, p: str = policy, w: float = weight) -> str:
            return spread(regime.metric(p, key, w), digits)

        solve = (
            "–"
            if policy.startswith("greedy")
            else f"{med(regime.metric(policy, 'solve_p50_ms', weight)):.1f} / "
            f"{med(regime.metric(policy, 'solve_p95_ms', weight)):.1f} / "
            f"{max(regime.metric(policy, 'solve_max_ms', weight)):.0f}"
        )
        sizes = (
            "–"
            if policy.startswith("greedy")
            else f"{med(regime.metric(policy, 'batch_requests_mean', weight)):.1f} / "
            f"{max(regime.metric(policy, 'batch_requests_max', weight)):.0f}"
        )
        lines.append(
            f"| {name} | {m('served_pct')} | {m('wait_mean_s', 0)} | {m('wait_p50_s', 0)} "
            f"| {m('wait_p95_s', 0)} | {m('utilisation_pct')} | {m('empty_km_per_ride', 2)} "
            f"| {m('earnings_gini', 3)} | {m('lowest_decile_share_pct', 2)} | {solve} | {sizes} |"
        )
    return lines


def versus_best_greedy(
    regime: Regime, policy: str = "batched", weight: float = 0.0
) -> dict[str, Any]:
    """Per seed: the policy minus the best greedy rule on that seed (served pts, wait %)."""
    served_gap, wait_gap = [], []
    for row in regime.by_policy(policy, weight):
        seed = row["job"].seed
        greedy = [r for g in GREEDY_POLICIES for r in regime.by_policy(g) if r["job"].seed == seed]
        best_served = max(r["summary"]["served_pct"] for r in greedy)
        best_wait = min(r["summary"]["wait_mean_s"] for r in greedy)
        served_gap.append(row["summary"]["served_pct"] - best_served)
        wait_gap.append(100.0 * (row["summary"]["wait_mean_s"] / best_wait - 1.0))
    served_ok = med(served_gap) >= -0.5
    wait_ok = med(wait_gap) <= 1.0
    return {"served": served_gap, "wait": wait_gap, "ok": served_ok and wait_ok}


def surplus_pickup_eta(regime: Regime, policy: str) -> list[float]:
    """Mean pickup drive time in the quieter half of the hours (fewer requests than the median)."""
    values = []
    for row in regime.by_policy(policy):
        per_hour = np.array(row["requests_per_hour"])
        quiet = np.flatnonzero(per_hour < np.median(per_hour))
        in_quiet = np.isin(row["hour"], quiet) & row["served"]
        values.append(float(np.mean(row["pickup_eta_s"][in_quiet])))
    return values


def surplus_paired_eta(regime: Regime) -> list[dict[str, float]]:
    """Per seed, the quiet hours' requests at their first batch: the plan's offer against the one
    nearest-first in arrival order would make on the same drivers."""
    values = []
    for row in regime.by_policy("batched"):
        paired = row.get("paired")
        if paired is None:
            continue
        per_hour = np.array(row["requests_per_hour"])
        quiet_hours = np.flatnonzero(per_hour < np.median(per_hour))
        quiet = np.isin(row["hour"][paired["request"]], quiet_hours)
        planned, greedy = paired["batched_driver"] >= 0, paired["greedy_driver"] >= 0
        both = quiet & planned & greedy
        batched_s, greedy_s = paired["batched_s"][both], paired["greedy_s"][both]
        values.append(
            {
                "requests": int(quiet.sum()),
                "differing_pct": 100
                * float(np.mean(paired["batched_driver"][quiet] != paired["greedy_driver"][quiet])),
                "only_batched": int((quiet & planned & ~greedy).sum()),
                "only_greedy": int((quiet & greedy & ~planned).sum()),
                "change_pct": 100 * float(batched_s.sum() / greedy_s.sum() - 1),
            }
        )
    return values


# ---- the benchmark -----------------------------------------------------------------------------


def machine_description() -> list[str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    keep = ("Model name", "CPU(s):", "Thread(s) per core", "Core(s) per socket", "L2", "L3")
    cpu = [line.strip() for line in lscpu.splitlines() if line.strip().startswith(keep)]
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    import ortools
    import scipy

    return [
        f"- `nproc`: {nproc}; `lscpu`: " + "; ".join(f"`{c}`" for c in cpu),
        f"- Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__},"
        f" OR-Tools {ortools.__version__}; Redis at {get_settings().redis_url} "
        f"({_redis_version()})",
    ]


def _redis_version() -> str:
    import redis

    try:
        return "Redis " + str(batch_cycle.bench_redis().info("server")["redis_version"])
    except redis.RedisError as error:
        return f"unreachable: {error}"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def calibrate_taxi_fleets(
    settings: BenchSettings, data: Path
) -> tuple[dict[float, int], list[tuple[int, float]]]:
    """Fleet sizes at which the best greedy rule serves about 80, 90 and 95% (seed 0)."""
    jobs = [
        SimJob(
            "calibration", str(data / TAXI_FILE), None, *settings.taxi_window, fleet, 0,
            policy, 0.0, "straight", str(data / ROAD_GRAPH_DIR), False,
        )
        for fleet in settings.calibration_fleets
        for policy in GREEDY_POLICIES
    ]  # fmt: skip
    rows = run_jobs(jobs, settings.workers, "taxi fleet calibration")
    served = {
        fleet: max(r["summary"]["served_pct"] for r in rows if r["job"].fleet == fleet)
        for fleet in settings.calibration_fleets
    }
    fleets = np.array(sorted(served))
    shares = np.array([served[f] for f in fleets])
    chosen = {}
    for target in SERVED_TARGETS:
        fleet = float(np.interp(target, np.maximum.accumulate(shares), fleets))
        chosen[target] = int(round(fleet / 50.0) * 50)
    return chosen, sorted(served.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dispatch.simulation.bench", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="a few minutes, two seeds")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--skip-cycle", action="store_true", help="simulations only")
    parser.add_argument(
        "--render",
        type=Path,
        help="only rewrite the report from the raw results a previous run saved",
    )
    parser.add_argument(
        "--redo-cycle",
        action="store_true",
        help="with --render: measure the batch cycle again and keep the saved simulations",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.workers:
        settings = BenchSettings(**{**settings.__dict__, "workers": args.workers})
    data = args.data.resolve()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m dispatch.simulation.bench" + (" --quick" if args.quick else "")
    if args.render:
        from dispatch.simulation import bench_report

        # The raw results this bench wrote itself: a developer's own file, never untrusted input.
        saved = pickle.loads(args.render.read_bytes())  # nosec B301
        if args.redo_cycle:
            saved["report"]["cycle_started"] = time.strftime("%F %T %Z")
            saved["report"]["cycle_load_start"] = load_average()
            saved["report"]["cycle"] = run_cycle_benchmark(saved["settings"], data)
            saved["report"]["cycle_load_end"] = load_average()
            args.render.write_bytes(pickle.dumps(saved))
        bench_report.write(saved["report"], saved["settings"], out, command, saved["machine"])
        return 0
    started = time.perf_counter()
    report: dict[str, Any] = {"load_start": load_average(), "started": time.strftime("%F %T %Z")}

    if not args.skip_cycle:
        report["cycle_started"] = report["started"]
        report["cycle_load_start"] = load_average()
        report["cycle"] = run_cycle_benchmark(settings, data)
        report["cycle_load_end"] = load_average()

    fleets, calibration = calibrate_taxi_fleets(settings, data)
    report["calibration"] = calibration
    report["fleets"] = fleets
    taxi_path, uber_path = str(data / TAXI_FILE), str(data / UBER_FILE)
    graph = str(data / ROAD_GRAPH_DIR)
    regimes: dict[str, Regime] = {}
    jobs: list[SimJob] = []
    for target, fleet in fleets.items():
        name = f"taxi-{target:.0f}"
        regimes[name] = Regime(
            name,
            f"taxi peak {settings.taxi_window[0]:%Y-%m-%d %H:%M}–{settings.taxi_window[1]:%H:%M}"
            f", {fleet} drivers (best greedy serves ≈{target:.0f}%)",
        )
        for seed in settings.seeds:
            for policy, weight in (
                *((p, 0.0) for p in (*GREEDY_POLICIES, "batched")),
                ("batched-priority", WAIT_PRIORITY_OPTION),
            ):
                jobs.append(
                    SimJob(name, taxi_path, None, *settings.taxi_window, fleet, seed, policy,
                           weight, "straight", graph, seed == settings.seeds[0] and target == 90.0)
                )  # fmt: skip
    road_fleet = fleets[90.0]
    regimes["taxi-90-road"] = Regime(
        "taxi-90-road", f"taxi peak, {road_fleet} drivers, Manhattan road-graph ETAs"
    )
    for seed in settings.seeds:
        for policy in (*GREEDY_POLICIES, "batched"):
            jobs.append(
                SimJob("taxi-90-road", taxi_path, None, *settings.taxi_window, road_fleet, seed,
                       policy, 0.0, "road", graph, False)
            )  # fmt: skip
    uber_window = settings.uber_window
    regimes["uber-day"] = Regime(
        "uber-day",
        f"Uber pickups {uber_window[0]:%Y-%m-%d %H:%M}–{uber_window[1]:%Y-%m-%d %H:%M}, "
        f"{settings.uber_fleet} drivers, trips drawn from the taxi file",
    )
    for seed in settings.seeds:
        for policy, weight in [
            *((p, 0.0) for p in (*GREEDY_POLICIES, "batched")),
            *(("batched-fair", w) for w in settings.fairness_weights),
        ]:
            jobs.append(
                SimJob("uber-day", uber_path, taxi_path, *uber_window, settings.uber_fleet, seed,
                       policy, weight, "straight", graph, seed == settings.seeds[0])
            )  # fmt: skip
    surplus = Regime(SURPLUS, f"{regimes['uber-day'].description}, quiet hours")
    for seed in settings.surplus_seeds:
        if seed not in settings.seeds:
            for policy in ("greedy-nearest", "batched"):
                jobs.append(
                    SimJob(SURPLUS, uber_path, taxi_path, *uber_window, settings.uber_fleet,
                           seed, policy, 0.0, "straight", graph, False)
                )  # fmt: skip
    # Longest runs first so the two processes finish together.
    jobs.sort(key=lambda j: (j.policy.startswith("greedy"), j.regime not in ("uber-day", SURPLUS)))
    for row in run_jobs(jobs, settings.workers, "policy comparison"):
        (surplus if row["job"].regime == SURPLUS else regimes[row["job"].regime]).rows.append(row)
    surplus.rows += [
        r for r in regimes["uber-day"].rows if r["job"].policy in ("greedy-nearest", "batched")
    ]

    report["regimes"] = regimes
    report["surplus"] = surplus
    report["load_end"] = load_average()
    report["elapsed_s"] = time.perf_counter() - started
    from dispatch.simulation import bench_report

    machine = machine_description()
    raw = Path(tempfile.gettempdir()) / f"coop-dispatch-bench-{os.getpid()}.pickle"
    raw.write_bytes(pickle.dumps({"report": report, "settings": settings, "machine": machine}))
    log(f"raw results saved to {raw} (re-render with --render {raw})")
    bench_report.write(report, settings, out, command, machine)
    log(f"wrote {out / 'matching.md'} in {report['elapsed_s'] / 60:.1f} min")
    return 0


def run_cycle_benchmark(settings: BenchSettings, data: Path) -> dict[str, Any]:
    taxi, uber = data / TAXI_FILE, data / UBER_FILE
    sizes = []
    for n_requests, n_drivers, cycles in settings.cycle_sizes:
        log(f"batch cycle {n_requests} x {n_drivers}")
        sizes.append(
            batch_cycle.measure_size(
                n_requests,
                n_drivers,
                list(settings.seeds),
                cycles,
                taxi,
                uber,
                with_dense=(n_requests, n_drivers) in settings.dense_seeds,
                dense_seeds=settings.dense_seeds.get((n_requests, n_drivers), ()),
            )
        )
    geosearch = []
    for n_drivers in settings.geosearch_drivers:
        log(f"per-request GEOSEARCH with {n_drivers} drivers indexed")
        median_ms, total_ms = batch_cycle.geosearch_per_request(
            n_drivers, settings.geosearch_requests, uber, taxi
        )
        geosearch.append((n_drivers, median_ms, total_ms))
    return {
        "sizes": sizes,
        "geosearch": geosearch,
        "geosearch_requests": settings.geosearch_requests,
    }


if __name__ == "__main__":
    raise SystemExit(main())
