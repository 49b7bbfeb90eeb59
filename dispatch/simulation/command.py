"""`coop-dispatch simulate`: replay a trip file against a fleet under several dispatch policies."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from dispatch.core.command_line import OneLineParser, run
from dispatch.matching.batch import MatchingSettings
from dispatch.simulation.metrics import PolicySummary
from dispatch.simulation.scenario import (
    POLICY_NAMES,
    build_scenario,
    make_eta,
    policy_named,
    run_policy,
)


def add_simulate_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `simulate` on a CLI's subparsers; it sets `run` like the other commands."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay real demand against a fleet under several dispatch policies",
        description=__doc__,
    )
    configure_parser(parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trips",
        type=Path,
        required=True,
        help="trip CSV (see dispatch/simulation/demand.py for the format)",
    )
    parser.add_argument("--start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--end", type=datetime.fromisoformat, required=True)
    parser.add_argument("--fleet", type=int, required=True, help="number of drivers")
    parser.add_argument(
        "--policies",
        default=",".join(POLICY_NAMES),
        help=f"comma-separated, from {', '.join(POLICY_NAMES)}",
    )
    parser.add_argument("--fairness-weight", type=float, default=1.0, help="for batched-fair")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decline-share", type=float, default=0.1)
    parser.add_argument("--search-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--batch-interval", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--wait-priority",
        type=float,
        default=MatchingSettings().wait_priority,
        help="batched: pickup seconds a request is favoured by per second waited",
    )
    parser.add_argument(
        "--trip-shapes",
        type=Path,
        help="a trip file with dropoffs to draw trips from, when --trips has none",
    )
    parser.add_argument("--eta", choices=("straight", "road"), default="straight")
    parser.add_argument("--road-graph", type=Path, help="directory of the road graph CSVs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    policies = [
        policy_named(name.strip(), args.fairness_weight) for name in args.policies.split(",")
    ]
    scenario = build_scenario(
        args.trips,
        args.start,
        args.end,
        args.fleet,
        args.seed,
        args.trip_shapes,
        args.decline_share,
        args.search_timeout,
        args.batch_interval,
        MatchingSettings(wait_priority=args.wait_priority),
    )
    eta = make_eta(args.eta, args.road_graph)
    print(
        f"{len(scenario.demand)} requests, {args.fleet} drivers, {args.eta} ETA",
        file=sys.stderr,
        flush=True,
    )
    summaries = []
    for policy in policies:
        started = time.perf_counter()
        summaries.append(run_policy(scenario, policy, eta, show_progress=True))
        print(
            f"  {policy.name}: done in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    if args.json:
        print(json.dumps([s.as_json() for s in summaries], indent=2, allow_nan=False))
    else:
        print(format_table(summaries))
    return 0


def format_table(summaries: list[PolicySummary]) -> str:
    header = (
        "| policy | served % | wait mean / p50 / p95 s | utilisation % | empty km/ride "
        "| earnings Gini | lowest decile % | solve p50 / p95 / max ms | batch size mean / max |"
    )
    lines = [header, "|" + "---|" * 10]
    for s in summaries:
        lines.append(
            f"| {s.policy} | {s.served_pct:.1f} | {s.wait_mean_s:.0f} / {s.wait_p50_s:.0f} / "
            f"{s.wait_p95_s:.0f} | {s.utilisation_pct:.1f} | {s.empty_km_per_ride:.2f} | "
            f"{s.earnings_gini:.3f} | {s.lowest_decile_share_pct:.2f} | "
            f"{s.solve_p50_ms:.1f} / {s.solve_p95_ms:.1f} / {s.solve_max_ms:.1f} | "
            f"{s.batch_requests_mean:.0f} / {s.batch_requests_max} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m dispatch.simulation", description=__doc__)
    configure_parser(parser)
    return run(parser, argv, run_simulate)
