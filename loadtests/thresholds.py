"""Pass/fail thresholds: Locust options (so also `LOCUST_*` variables and config files) that set
the process exit code, so an operator's CI can fail a release on them. 0 turns a limit off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from locust.env import Environment

from loadtests import kpi


@dataclass(frozen=True)
class Check:
    name: str
    limit: float
    value: float
    passed: bool
    unit: str = ""
    at_least: bool = False


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("coop-dispatch thresholds (0 = off; exit code 1 when broken)")
    group.add_argument(
        "--max-request-to-offer-p99-ms",
        type=float,
        default=2500.0,
        env_var="LOCUST_MAX_REQUEST_TO_OFFER_P99_MS",
        help="p99 request→offer; the target is the batch window + 500 ms",
    )
    group.add_argument(
        "--max-request-to-match-p99-ms",
        type=float,
        default=0.0,
        env_var="LOCUST_MAX_REQUEST_TO_MATCH_P99_MS",
    )
    group.add_argument(
        "--max-error-rate",
        type=float,
        default=0.01,
        env_var="LOCUST_MAX_ERROR_RATE",
        help="failed HTTP and WebSocket operations / all of them (KPI rows excluded)",
    )
    group.add_argument(
        "--max-server-errors",
        type=int,
        default=0,
        env_var="LOCUST_MAX_SERVER_ERRORS",
        help="5xx responses",
    )
    group.add_argument(
        "--max-unfulfilled-share", type=float, default=0.1, env_var="LOCUST_MAX_UNFULFILLED_SHARE"
    )
    group.add_argument(
        "--min-acceptance-rate", type=float, default=0.0, env_var="LOCUST_MIN_ACCEPTANCE_RATE"
    )
    group.add_argument(
        "--max-location-ack-p99-ms",
        type=float,
        default=0.0,
        env_var="LOCUST_MAX_LOCATION_ACK_P99_MS",
    )
    group.add_argument(
        "--max-lost-rides",
        type=int,
        default=0,
        env_var="LOCUST_MAX_LOST_RIDES",
        help="rides the server does not know, or that ended without the rider being told",
    )
    group.add_argument(
        "--min-rides",
        type=int,
        default=0,
        env_var="LOCUST_MIN_RIDES",
        help="fail a run that requested fewer rides (catches a test that silently did nothing)",
    )


def _p99(environment: Environment, name: str) -> float | None:
    entry = environment.stats.entries.get((name, kpi.KPI))
    if entry is None or entry.num_requests == 0:
        return None
    return float(entry.get_response_time_percentile(0.99))


def protocol_error_rate(environment: Environment) -> tuple[int, int]:
    requests = failures = 0
    for (_, method), entry in environment.stats.entries.items():
        if method == kpi.KPI:
            continue
        requests += entry.num_requests
        failures += entry.num_failures
    return failures, requests


def evaluate(environment: Environment, ledger_summary: dict[str, Any]) -> list[Check]:
    options = environment.parsed_options
    if options is None:
        raise RuntimeError("thresholds are read from Locust's parsed options")
    checks: list[Check] = []

    def at_most(name: str, limit: float, value: float | None, unit: str = "") -> None:
        if limit and value is not None:
            checks.append(Check(name, limit, value, value <= limit, unit))

    at_most(
        "p99 request→offer",
        options.max_request_to_offer_p99_ms,
        _p99(environment, kpi.REQUEST_TO_OFFER),
        "ms",
    )
    at_most(
        "p99 request→match",
        options.max_request_to_match_p99_ms,
        _p99(environment, kpi.REQUEST_TO_MATCH),
        "ms",
    )
    at_most(
        "p99 location ack",
        options.max_location_ack_p99_ms,
        _p99(environment, kpi.LOCATION_ACCEPTED),
        "ms",
    )
    failures, requests = protocol_error_rate(environment)
    at_most("error rate", options.max_error_rate, failures / requests if requests else 0.0)
    checks.append(
        Check(
            "5xx responses",
            options.max_server_errors,
            ledger_summary["server_errors"],
            ledger_summary["server_errors"] <= options.max_server_errors,
        )
    )
    if ledger_summary["ended"]:
        at_most(
            "unfulfilled share", options.max_unfulfilled_share, ledger_summary["unfulfilled_share"]
        )
    checks.append(
        Check(
            "lost rides",
            options.max_lost_rides,
            ledger_summary["lost"],
            ledger_summary["lost"] <= options.max_lost_rides,
        )
    )
    if options.min_acceptance_rate:
        rate = ledger_summary["acceptance_rate"]
        checks.append(
            Check(
                "offer acceptance rate",
                options.min_acceptance_rate,
                rate,
                rate >= options.min_acceptance_rate,
                at_least=True,
            )
        )
    if options.min_rides:
        count = ledger_summary["requested"]
        checks.append(
            Check(
                "rides requested",
                options.min_rides,
                count,
                count >= options.min_rides,
                at_least=True,
            )
        )
    return checks
